// The anchor for benches/hub/run.sh and benches/hub/channels.sh: the smallest hub most people
// would write in Node.js with the `ws` package (8.x), serving the same surface the bench
// drivers use. Single node, no queue bounds, no heartbeat, no cluster: less work per frame
// than courier hub does.
//
// * GET /ws?client_id=… — welcome frame on connect.
// * POST /api/v1/broadcast with a Bearer key — the body sent as one text frame to every open
//   client.
// * Channels (rooms), the same messages as courier hub's: a client sends
//   {"message_type":"subscribe","message_id":N,"data":{"channel":C}} and is answered
//   "subscribed"; POST /api/v1/channels/C/publish (Bearer key) parses the body as JSON (else
//   a string), builds the publication frame once and sends it to every open socket in C's
//   room (a Map of channel -> Set of sockets; exact names only, no patterns, so no overlap to
//   deduplicate). Channels named "rec.*" keep their last HISTORY_MAX publications in a
//   process-memory array with offsets 1, 2, … and one random epoch; a subscribe with
//   "since": {"offset", "epoch"} is answered with every publication after it in the reply
//   (`recovered: true, publications: [{offset, data}]`), or `resync: true` when the epoch
//   differs or the history no longer reaches back — what courier hub answers, minus the
//   hand-over of publications that arrive during the reply (Node runs one thing at a time).
//
//   node benches/hub/anchor.mjs PORT API_KEY      (the scripts set NODE_PATH to the ws install)
import http from "node:http";
import crypto from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] ?? 18100);
const apiKey = process.argv[3] ?? "bench";
const HISTORY_MAX = 20000;
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

const rooms = new Map(); // channel -> Set of sockets
const histories = new Map(); // channel -> { next: number, items: [{ offset, data }] }
const epoch = crypto.randomBytes(8).toString("hex");

function readBody(req, then) {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => then(Buffer.concat(chunks).toString("utf8")));
}

function json(res, body) {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function publish(channel, text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = text;
  }
  const body = { channel, data };
  if (channel.startsWith("rec.")) {
    let history = histories.get(channel);
    if (!history) {
      history = { next: 1, items: [] };
      histories.set(channel, history);
    }
    const offset = history.next++;
    history.items.push({ offset, data });
    if (history.items.length > HISTORY_MAX) history.items.shift();
    body.offset = String(offset);
    body.epoch = epoch;
    body.prev = String(offset - 1);
  }
  const frame = JSON.stringify({ message_type: "publication", message_id: 0, data: body });
  let delivered = 0;
  for (const client of rooms.get(channel) ?? []) {
    if (client.readyState === 1) {
      client.send(frame);
      delivered += 1;
    }
  }
  return delivered;
}

function subscribe(ws, id, data) {
  const channel = data.channel;
  if (!rooms.has(channel)) rooms.set(channel, new Set());
  rooms.get(channel).add(ws);
  ws.channels.add(channel);
  const reply = { channel };
  if (channel.startsWith("rec.")) {
    const history = histories.get(channel) ?? { next: 1, items: [] };
    reply.epoch = epoch;
    reply.offset = String(history.next - 1);
    const since = data.since;
    if (since) {
      const from = Number(since.offset);
      const first = history.items.length ? history.items[0].offset : history.next;
      if (since.epoch !== epoch || !(from >= first - 1)) {
        Object.assign(reply, { recovered: false, resync: true, reason: "history does not reach back" });
      } else {
        reply.recovered = true;
        reply.publications = history.items
          .slice(from - first + 1)
          .map((p) => ({ offset: String(p.offset), data: p.data }));
      }
    }
  }
  ws.send(JSON.stringify({ message_type: "subscribed", message_id: id, data: reply }));
}

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/health") {
    json(res, { status: "ok" });
    return;
  }
  const channelPublish = req.url.match(/^\/api\/v1\/channels\/([^/]+)\/publish$/);
  if (req.method === "POST" && (req.url === "/api/v1/broadcast" || channelPublish)) {
    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      res.writeHead(401);
      res.end();
      return;
    }
    readBody(req, (text) => {
      if (channelPublish) {
        const channel = decodeURIComponent(channelPublish[1]);
        json(res, { channel, delivered: publish(channel, text) });
        return;
      }
      let delivered = 0;
      for (const client of wss.clients) {
        if (client.readyState === 1) {
          client.send(text);
          delivered += 1;
        }
      }
      json(res, { delivered });
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
    ws.channels = new Set();
    ws.on("message", (raw) => {
      let message;
      try {
        message = JSON.parse(raw.toString());
      } catch {
        return;
      }
      if (message.message_type === "subscribe" && typeof message.data?.channel === "string") {
        subscribe(ws, message.message_id, message.data);
      }
    });
    ws.on("close", () => {
      for (const channel of ws.channels) rooms.get(channel)?.delete(ws);
    });
    ws.send(JSON.stringify({ message_type: "welcome" }));
  });
});

server.listen(port, "127.0.0.1");
