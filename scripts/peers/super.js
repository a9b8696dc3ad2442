// node super.js URL TOKEN -> ms until the snapshot's last frame (the first plain id after "G:k" ids)
const WebSocket = require(process.env.WS_MODULE);
const [url, token] = process.argv.slice(2);
const t0 = Date.now();
const ws = new WebSocket(`${url}/ws?access_token=${token}`);
let frames = 0, bytes = 0, welcome = 0, parts = 0;
ws.on('message', (d) => {
  frames++; bytes += d.length;
  const head = d.toString('utf8', 0, 80);
  if (head.startsWith('{"type":"welcome"')) { welcome = Date.now() - t0; return; }
  const m = /"id":"([^"]*)"/.exec(head);
  if (!m) return;
  if (m[1].includes(':')) { parts++; return; }
  console.log(JSON.stringify({welcome_ms: welcome, snapshot_ms: Date.now() - t0, frames, parts, bytes}));
  ws.terminate(); process.exit(0);
});
setTimeout(() => { console.log(JSON.stringify({timeout: true, frames, bytes})); process.exit(1); }, 60000);
