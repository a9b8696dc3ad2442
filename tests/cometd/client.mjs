// The official CometD JavaScript client (with cometd-nodejs-client) against
// a running chatgate: node client.mjs <base-url> <scenario>, the scenario's
// inputs in the environment (JSON), its outcome as one JSON line on stdout.
// Assertions are the Rust test's (tests/cometd.rs); this script only acts
// and reports, and exits non-zero if it could not.
//
// Scenarios:
//   parties   PARTIES=[{name, token}], TRANSPORT=websocket|long-polling,
//             INGEST={token, items}, EXPECT={name: count}: every party
//             handshakes and subscribes, then the items are ingested; the
//             notifications each party received are reported.
//   refused   TOKENS=[token or null]: each handshake's reply is reported.
//   ack       PARTIES=[{name, token}] (one), INGEST, EXPECT: long-polling
//             with the AckExtension through a proxy here that cuts the
//             first response carrying a notification on its way.
import http from "node:http";
import { adapt } from "cometd-nodejs-client";
import { CometD, AckExtension } from "cometd";

adapt();

const [base, scenario] = process.argv.slice(2);
const env = (name) => JSON.parse(process.env[name] ?? "null");
const CHANNEL = "/v2/me/facebooksession";
// Every wait here is bounded, so a failure reports instead of hanging.
const LIMIT_MS = 20000;

function client(url, transport, ack) {
  const cometd = new CometD();
  if (transport === "long-polling") {
    cometd.unregisterTransport("websocket");
  }
  if (ack) {
    cometd.registerExtension("ack", new AckExtension());
  }
  cometd.configure({ url: `${url}/api/v2/notifications`, logLevel: "warn" });
  return cometd;
}

function handshake(cometd, token) {
  return new Promise((resolve) => {
    const ext = token === null ? {} : { access_token: token };
    cometd.handshake({ ext }, (reply) => resolve(reply));
  });
}

function subscribe(cometd, received) {
  return new Promise((resolve, reject) => {
    cometd.subscribe(CHANNEL, (m) => received.push(m), (reply) =>
      reply.successful ? resolve(reply) : reject(new Error(JSON.stringify(reply))));
  });
}

function disconnect(cometd) {
  return new Promise((resolve) => {
    cometd.disconnect(() => resolve());
    setTimeout(resolve, 2000);
  });
}

async function ingest({ token, items }) {
  const resp = await fetch(`${base}/upstream/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(items),
  });
  if (resp.status !== 202) {
    throw new Error(`ingest refused: ${resp.status} ${await resp.text()}`);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// Waits until each party has its expected count, then a little more for
/// anything that should not come.
async function settle(received, expect) {
  const deadline = Date.now() + LIMIT_MS;
  const done = () => Object.entries(expect).every(([n, c]) => received[n].length >= c);
  while (!done() && Date.now() < deadline) {
    await sleep(50);
  }
  await sleep(500);
}

/// Every party connects and subscribes; then the ingest; then the report.
async function parties(url, transport, ack) {
  const received = {};
  const clients = {};
  const handshakes = {};
  for (const { name, token } of env("PARTIES")) {
    const cometd = client(url, transport, ack);
    received[name] = [];
    const reply = await handshake(cometd, token);
    if (!reply.successful) {
      throw new Error(`${name}: handshake refused: ${JSON.stringify(reply)}`);
    }
    handshakes[name] = { ext: reply.ext, transport: cometd.getTransport().type };
    await subscribe(cometd, received[name]);
    clients[name] = cometd;
  }
  // The snapshot comes first; let it arrive, then clear it from the report.
  await sleep(500);
  for (const name of Object.keys(received)) received[name].length = 0;
  await ingest(env("INGEST"));
  await settle(received, env("EXPECT"));
  for (const cometd of Object.values(clients)) await disconnect(cometd);
  const messages = Object.fromEntries(Object.entries(received).map(([n, ms]) =>
    [n, ms.map((m) => ({ id: m.id, channel: m.channel, data: m.data }))]));
  return { handshakes, messages };
}

async function refused() {
  const replies = [];
  for (const token of env("TOKENS")) {
    const cometd = client(base, "long-polling", false);
    const reply = await handshake(cometd, token);
    replies.push({ successful: reply.successful, error: reply.error ?? null,
      clientId: reply.clientId ?? null, status: cometd.getStatus() });
    await disconnect(cometd);
  }
  return { replies };
}

/// A proxy to chatgate that cuts, once, a response that carries a
/// notification: chatgate sent it, the client never gets it.
function cuttingProxy() {
  const target = new URL(base);
  let cuts = 0;
  const server = http.createServer((req, res) => {
    // Notifications only: a subscribe reply names the channel too.

    const upstream = http.request({ host: target.hostname, port: target.port, path: req.url,
      method: req.method, headers: req.headers }, (up) => {
      const chunks = [];
      up.on("data", (c) => chunks.push(c));
      up.on("end", () => {
        const body = Buffer.concat(chunks);
        if (cuts === 0 && body.includes('"data":')) {
          cuts += 1;
          res.socket.destroy();
          return;
        }
        res.writeHead(up.statusCode, up.headers);
        res.end(body);
      });
    });
    upstream.on("error", () => res.socket.destroy());
    req.pipe(upstream);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () =>
    resolve({ server, url: `http://127.0.0.1:${server.address().port}`, cuts: () => cuts })));
}

async function ack() {
  const proxy = await cuttingProxy();
  try {
    const report = await parties(proxy.url, "long-polling", true);
    return { ...report, cuts: proxy.cuts() };
  } finally {
    proxy.server.close();
    proxy.server.closeAllConnections();
  }
}

const run = { parties: () => parties(base, env("TRANSPORT"), false), refused, ack }[scenario];
if (!run) {
  console.error(`unknown scenario ${scenario}`);
  process.exit(2);
}
const timer = setTimeout(() => {
  console.error("the scenario ran out of time");
  process.exit(3);
}, LIMIT_MS * 3);
try {
  console.log(JSON.stringify(await run()));
  clearTimeout(timer);
  process.exit(0);
} catch (e) {
  console.error(e);
  process.exit(1);
}
