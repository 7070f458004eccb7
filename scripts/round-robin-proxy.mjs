// A round-robin HTTP proxy for testing several `courier streams` nodes as one service: every
// request (not every connection) goes to the next upstream, so consecutive requests of one
// client land on different nodes. Responses are streamed through as they arrive, so long-polls
// and SSE work. Loopback only; for tests, not for production.
//
// Usage: node scripts/round-robin-proxy.mjs UPSTREAM_URL UPSTREAM_URL...
//   Listens on 127.0.0.1 on an ephemeral port and prints "listening on http://127.0.0.1:PORT".
import http from "node:http"

const upstreams = process.argv.slice(2).map((url) => new URL(url))
if (upstreams.length === 0) {
  console.error("usage: node scripts/round-robin-proxy.mjs UPSTREAM_URL UPSTREAM_URL...")
  process.exit(2)
}
for (const u of upstreams) {
  if (!["127.0.0.1", "[::1]", "localhost"].includes(u.hostname)) {
    console.error(`refusing a non-loopback upstream: ${u}`)
    process.exit(2)
  }
}

// Keep-alive to the upstreams, as a real load balancer would.
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })
let next = 0
const counts = upstreams.map(() => 0)

const server = http.createServer((req, res) => {
  const index = next
  next = (next + 1) % upstreams.length
  counts[index]++
  const target = upstreams[index]
  const upstream = http.request(
    {
      agent,
      host: target.hostname.replace(/^\[|\]$/g, ""),
      port: target.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.rawHeaders)
      // An upstream that drops mid-response drops the client's response too (no hang).
      answer.on("aborted", () => res.destroy())
      answer.on("error", (err) => res.destroy(err))
      answer.pipe(res)
    },
  )
  upstream.on("error", (err) => {
    if (!res.headersSent) {
      res.writeHead(502, { "content-type": "text/plain" })
      res.end(`proxy: upstream ${target.origin} failed: ${err.message}\n`)
    } else {
      res.destroy(err)
    }
  })
  // A client that goes away early (an SSE reader closing) ends the upstream request too.
  res.on("close", () => {
    if (!res.writableFinished) upstream.destroy()
  })
  req.pipe(upstream)
})
server.keepAliveTimeout = 60_000
server.listen(0, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})

const stop = () => {
  console.log(`requests per upstream: ${upstreams.map((u, i) => `${u.origin}=${counts[i]}`).join(" ")}`)
  server.close()
  agent.destroy()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
