// The anchor for benches/hub/run.sh: the smallest broadcast hub most people would write in
// Node.js with the `ws` package (8.x), serving the same surface the bench driver uses:
// GET /ws?client_id=… (welcome frame on connect), POST /api/v1/broadcast with a Bearer key
// (body sent as one text frame to every open client). Single node, no queue bounds, no
// heartbeat, no cluster: less work per frame than courier hub does.
//
//   node benches/hub/anchor.mjs PORT API_KEY      (run.sh sets NODE_PATH to the ws install)
import http from "node:http";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] ?? 18100);
const apiKey = process.argv[3] ?? "bench";
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/health") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"status":"ok"}');
    return;
  }
  if (req.method === "POST" && req.url === "/api/v1/broadcast") {
    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      res.writeHead(401);
      res.end();
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      let delivered = 0;
      for (const client of wss.clients) {
        if (client.readyState === 1) {
          client.send(text);
          delivered += 1;
        }
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ delivered }));
    });
    return;
  }
  res.writeHead(404);
  res.end();
});

server.on("upgrade", (req, socket, head) => {
  if (!req.url.startsWith("/ws")) {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.send(JSON.stringify({ message_type: "welcome" }));
  });
});

server.listen(port, "127.0.0.1");
