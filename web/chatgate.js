// chatgate browser client: the pieces the agent desktop and the customer
// widget share. It uses the public API only: REST calls with a bearer
// token, and GET /ws with ?access_token= (a browser cannot set headers on
// a WebSocket).
//
// - Stream: one /ws connection that reconnects by itself with `since`, so
//   no notification is lost or doubled across a reconnect.
// - LongPollStream: the same over Bayeux long-polling on
//   /api/v2/notifications, for browsers where a WebSocket cannot be
//   opened (a proxy that blocks them); openStream picks one.
// - SessionView: one session as a page shows it: the session object, the
//   message log keyed by index, who is typing.
// - helpers: sessionIdOf, api, el, describe.

/** The id of the session a notification is about (SPEC 2). */
export function sessionIdOf(n) {
  if (n?.facebooksession?.id) return n.facebooksession.id;
  const path = n?.facebooksessionPath || n?.facebooksessionUri || "";
  const last = path.split("/").filter(Boolean).pop();
  return last || null;
}

/** The user id of an agent participant: from its path, else its uri, else its id. */
export function userIdOf(p) {
  const from = (s) => (s ? s.split("/").filter(Boolean).pop() : null);
  if (p?.path && p.path.startsWith("/users/")) return from(p.path);
  if (p?.uri && p.uri.includes("/users/")) return from(p.uri);
  return p?.id ?? null;
}

/** An error of a REST call, with the server's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * Calls the REST API; resolves to the parsed JSON body, rejects with an
 * ApiError carrying the server's statusMessage (or error) text.
 */
export async function api(method, path, { token, body } = {}) {
  const headers = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "The server cannot be reached.");
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const why = data?.statusMessage || data?.error || text || res.statusText;
    throw new ApiError(res.status, `${why} (HTTP ${res.status})`);
  }
  return data;
}

/** Creates an element: el("li", {class: "x", dataset: {a: 1}}, child, "text"). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** "09:41" for a message's timestamp, when it has one. */
export function clock(message) {
  let t = null;
  if (typeof message.timestamp === "string") t = Date.parse(message.timestamp);
  if (Number.isNaN(t) || t === null) {
    const s = Number(message.timestampSeconds);
    // The seed prints milliseconds under this name; accept both.
    if (Number.isFinite(s) && s > 0) t = s > 1e11 ? s : s * 1000;
  }
  if (!t || Number.isNaN(t)) return "";
  return new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

const TYPING = new Set(["TypingStarted", "TypingStopped"]);
/** How long a typing indicator stays without news (the sender may vanish). */
const TYPING_EXPIRES_MS = 30_000;

/** One session as a page shows it. */
export class SessionView {
  constructor(id) {
    this.id = id;
    this.session = { id, participants: [] };
    /** index -> message; a message seen twice (snapshot, replay) is kept once. */
    this.messages = new Map();
    /** participantId -> {participant, visibility, until} */
    this.typing = new Map();
    this.firstSeen = Date.now();
  }

  /** Takes in one notification of this session; returns what changed. */
  apply(n) {
    if (n.facebooksession) {
      // State changes carry the whole session object; keep the newest.
      this.session = { ...this.session, ...n.facebooksession };
    }
    let newLines = 0;
    for (const m of n.messages || []) {
      if (TYPING.has(m.type)) {
        this.noteTyping(m);
        continue;
      }
      const key = Number(m.index);
      if (!this.messages.has(key)) newLines += 1;
      this.messages.set(key, m);
      if (m.from?.participantId) this.typing.delete(m.from.participantId);
    }
    return { newLines };
  }

  /**
   * Adds earlier messages (from a snapshot taken for this purpose); only
   * lines, never state: live frames may already be newer than it.
   */
  backfill(messages) {
    this.backfilled = true;
    for (const m of messages) {
      if (!TYPING.has(m.type) && !this.messages.has(Number(m.index))) this.messages.set(Number(m.index), m);
    }
  }

  /** Whether lines before the first one seen are missing (joined mid-session). */
  get missesHistory() {
    if (this.backfilled || this.messages.size === 0) return false;
    return Math.min(...this.messages.keys()) > 1;
  }

  noteTyping(m) {
    const who = m.from?.participantId;
    if (!who) return;
    if (m.type === "TypingStarted") {
      this.typing.set(who, {
        participant: m.from,
        visibility: m.visibility || "All",
        until: Date.now() + TYPING_EXPIRES_MS,
      });
    } else {
      this.typing.delete(who);
    }
  }

  /** Lines of the transcript, oldest first. */
  lines() {
    return [...this.messages.entries()].sort((a, b) => a[0] - b[0]).map(([, m]) => m);
  }

  /** Who is typing now (other than `selfId`). */
  typists(selfId) {
    const now = Date.now();
    const out = [];
    for (const [id, t] of this.typing) {
      if (t.until < now) this.typing.delete(id);
      else if (id !== selfId) out.push(t);
    }
    return out;
  }

  get participants() {
    return this.session.participants || [];
  }

  get state() {
    return this.session.state || "Unknown";
  }
}

/** What a transcript line says, without its author ("joined", text...). */
export function describe(m) {
  const who = m.from?.nickname || m.from?.type || "Someone";
  switch (m.type) {
    case "Text":
      return { who, text: m.text ?? "" };
    case "ParticipantJoined":
      return { who, text: "joined the chat", event: true };
    case "ParticipantLeft":
      return { who, text: "left the chat", event: true };
    case "PushUrl":
      return { who, text: m.text || m.url || "", url: m.url || m.text };
    case "Notice":
      return { who, text: m.text ?? "", event: true };
    default:
      return { who, text: m.text ?? m.type, event: !m.text };
  }
}

/** Only http(s) links are made clickable. */
export function safeUrl(u) {
  try {
    const url = new URL(u, location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/**
 * One /ws connection that stays up: reconnects with backoff and resumes
 * with `since` = the id of the last notification taken in and `epoch` =
 * the epoch of the welcome its stream began with (ids count within an
 * epoch: after a server restart, or a session that came back, the server
 * answers resumed:false and a snapshot instead of a wrong resume).
 * Snapshot frames with ids "G:k" are not resumable; the last one of a
 * snapshot has a plain id, as every live frame does.
 *
 * Callbacks: onNotification(data, frame), onWelcome(welcome),
 * onStatus("connecting" | "live" | "reconnecting" | "stopped", detail).
 */
export class Stream {
  constructor({ token, onNotification, onWelcome, onStatus, since = null, epoch = null }) {
    this.token = token;
    this.onNotification = onNotification;
    this.onWelcome = onWelcome || (() => {});
    this.onStatus = onStatus || (() => {});
    this.lastId = since;
    this.epoch = epoch;
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    this.held = false;
    this.timer = null;
    /** Ids of the frames taken in, by connection number, for the curious and for tests (bounded). */
    this.received = [];
    this.welcomes = [];
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Closes for good (sign out, chat ended). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "bye");
    this.onStatus("stopped");
  }

  /**
   * Cuts the socket as a network failure would. With `hold`, it stays down
   * until release(): what happens meanwhile must arrive on resume.
   */
  cut({ hold = false } = {}) {
    this.held = hold;
    if (this.ws) this.ws.close(4000, "cut");
  }

  release() {
    this.held = false;
    if (!this.ws && !this.stopped) this.connect();
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams({ access_token: this.token });
    if (this.lastId && this.epoch) {
      q.set("since", this.lastId);
      q.set("epoch", this.epoch);
    }
    return `${scheme}//${location.host}/ws?${q}`;
  }

  connect() {
    clearTimeout(this.timer);
    this.onStatus(this.attempt ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      // Refused before any network (a policy, no WebSocket at all).
      this.unavailable();
      return;
    }
    this.ws = ws;
    let welcomed = false;
    ws.onmessage = (ev) => {
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame.type === "welcome") {
        welcomed = true;
        this.attempt = 0;
        // A stream that was not resumed begins anew, in this epoch: no id
        // of the old one may be used with it.
        if (!frame.resumed) {
          this.epoch = frame.epoch;
          this.lastId = null;
        }
        this.welcomes.push(frame);
        this.onWelcome(frame);
        this.onStatus("live", frame);
      } else if (frame.type === "notification") {
        this.received.push({ conn: this.welcomes.length, id: String(frame.id) });
        if (this.received.length > 5000) this.received.splice(0, 1000);
        if (frame.id && !String(frame.id).includes(":")) this.lastId = String(frame.id);
        this.onNotification(frame.data, frame);
      } else if (frame.type === "error") {
        this.lastError = frame;
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (ev.code === 4001) {
        // Token expired: retrying with it cannot work.
        this.stopped = true;
        this.onStatus("stopped", { reason: "Your sign-in has expired." });
        return;
      }
      if (!welcomed) this.attempt += 1;
      else this.attempt = 1;
      if (welcomed) this.everWelcomed = true;
      // Never a welcome in several tries: WebSockets do not get through.
      if (!this.everWelcomed && this.attempt >= 3 && this.onUnavailable) {
        this.unavailable();
        return;
      }
      if (this.held) {
        this.onStatus("reconnecting", { held: true });
        return;
      }
      const delay = Math.min(10_000, 250 * 2 ** Math.min(this.attempt, 6));
      this.onStatus("reconnecting", { inMs: delay });
      this.timer = setTimeout(() => this.connect(), delay * (0.75 + Math.random() / 2));
    };
  }

  /** Hands over to another transport (see openStream), if one is offered. */
  unavailable() {
    this.ws = null;
    this.stopped = true;
    if (this.onUnavailable) this.onUnavailable({ since: this.lastId, epoch: this.epoch });
    else this.onStatus("stopped", { reason: "WebSocket connections cannot be opened here." });
  }
}

/** The Bayeux channel of the notifications. */
const CHANNEL = "/v2/me/facebooksession";
/** The Bayeux endpoint. */
const BAYEUX = "/api/v2/notifications";

/**
 * Stream's interface over Bayeux long-polling: handshake (the token in
 * ext.access_token, and since and epoch when resuming), subscribe, then
 * /meta/connect after /meta/connect. A cut, a failed request or advice to
 * handshake again all resume with since and epoch on a new handshake, so
 * nothing is lost or doubled, as on /ws. `welcomes` and `received` record
 * the same as Stream's (a welcome per handshake).
 */
export class LongPollStream {
  constructor({ token, onNotification, onWelcome, onStatus, since = null, epoch = null }) {
    this.token = token;
    this.onNotification = onNotification;
    this.onWelcome = onWelcome || (() => {});
    this.onStatus = onStatus || (() => {});
    this.lastId = since;
    this.epoch = epoch;
    this.transport = "long-polling";
    this.attempt = 0;
    this.stopped = false;
    this.held = false;
    this.abort = null;
    this.timer = null;
    /** Counts runs, so that one a cut ended does nothing more. */
    this.run = 0;
    this.received = [];
    this.welcomes = [];
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const clientId = this.clientId;
    this.end();
    if (clientId) this.post([{ channel: "/meta/disconnect", clientId }]).catch(() => {});
    this.onStatus("stopped");
  }

  /** Cuts the request in flight as a network failure would (see Stream.cut). */
  cut({ hold = false } = {}) {
    this.held = hold;
    this.end();
    this.retry();
  }

  release() {
    this.held = false;
    if (!this.stopped && !this.abort) this.connect();
  }

  end() {
    this.run += 1;
    this.clientId = null;
    if (this.abort) this.abort.abort();
    this.abort = null;
  }

  async post(messages, signal) {
    const res = await fetch(BAYEUX, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(messages),
      signal,
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return res.json();
  }

  connect() {
    clearTimeout(this.timer);
    this.onStatus(this.attempt ? "reconnecting" : "connecting");
    const run = ++this.run;
    this.abort = new AbortController();
    this.loop(run, this.abort.signal).catch(() => {
      if (run === this.run) {
        this.abort = null;
        this.retry();
      }
    });
  }

  retry() {
    if (this.stopped) return;
    if (this.held) {
      this.onStatus("reconnecting", { held: true });
      return;
    }
    this.attempt += 1;
    const delay = Math.min(10_000, 250 * 2 ** Math.min(this.attempt, 6));
    this.onStatus("reconnecting", { inMs: delay });
    this.timer = setTimeout(() => this.connect(), delay * (0.75 + Math.random() / 2));
  }

  async loop(run, signal) {
    const ext = { access_token: this.token };
    if (this.lastId && this.epoch) Object.assign(ext, { since: this.lastId, epoch: this.epoch });
    const [hs] = await this.post([{ channel: "/meta/handshake", version: "1.0",
      supportedConnectionTypes: ["long-polling"], ext }], signal);
    if (run !== this.run) return;
    if (!hs.successful) return this.refused(hs);
    const welcome = { type: "welcome", resumed: !!hs.ext?.resumed, epoch: hs.ext?.epoch };
    if (!welcome.resumed) {
      this.epoch = welcome.epoch;
      this.lastId = null;
    }
    this.clientId = hs.clientId;
    this.attempt = 0;
    this.welcomes.push(welcome);
    this.onWelcome(welcome);
    this.onStatus("live", welcome);
    let batch = [{ channel: "/meta/subscribe", clientId: hs.clientId, subscription: CHANNEL },
      { channel: "/meta/connect", clientId: hs.clientId, connectionType: "long-polling" }];
    while (run === this.run) {
      const replies = await this.post(batch, signal);
      if (run !== this.run) return;
      for (const m of replies) {
        if (m.channel === CHANNEL) this.take(m);
      }
      const c = replies.find((m) => m.channel === "/meta/connect");
      if (!c?.successful) {
        if (c?.advice?.reconnect === "none") return this.refused(c);
        // Advice to handshake again (fell behind, server restart): resume.
        throw new Error(c?.error || "connect failed");
      }
      batch = [{ channel: "/meta/connect", clientId: hs.clientId, connectionType: "long-polling" }];
    }
  }

  take(m) {
    this.received.push({ conn: this.welcomes.length, id: String(m.id) });
    if (this.received.length > 5000) this.received.splice(0, 1000);
    if (m.id && !String(m.id).includes(":")) this.lastId = String(m.id);
    this.onNotification(m.data, m);
  }

  refused(reply) {
    this.stopped = true;
    this.abort = null;
    const expired = String(reply.error || "").startsWith("401:");
    this.onStatus("stopped", { reason: expired ? "Your sign-in has expired." : reply.error });
  }
}

/**
 * A Stream where WebSockets work, else a LongPollStream; one that turns
 * out not to get through (no welcome in three tries) hands over to
 * long-polling, resuming where it was. `holder.stream` is the one in use.
 */
export function openStream(holder, options) {
  const poll = (resume) => {
    holder.stream = new LongPollStream({ ...options, ...resume });
    holder.stream.start();
  };
  if (typeof globalThis.WebSocket !== "function") {
    holder.stream = new LongPollStream(options);
  } else {
    holder.stream = new Stream(options);
    holder.stream.onUnavailable = poll;
  }
  holder.stream.start();
  return holder.stream;
}

/**
 * The message logs of the sessions `ids`, read from the snapshot a fresh
 * /ws connection starts with (for an agent who joins a session midway:
 * the live stream starts at their joining). Resolves to Map id -> messages;
 * closes the connection once the snapshot's last frame (plain id) is in.
 */
export function fetchHistory(token, ids, timeoutMs = 8000) {
  const wanted = new Set(ids);
  const out = new Map();
  return new Promise((resolve) => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams({ access_token: token });
    const ws = new WebSocket(`${scheme}//${location.host}/ws?${q}`);
    const done = () => {
      clearTimeout(timer);
      ws.close(1000, "history read");
      resolve(out);
    };
    const timer = setTimeout(done, timeoutMs);
    ws.onmessage = (ev) => {
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame.type !== "notification") return;
      const id = sessionIdOf(frame.data);
      if (wanted.has(id) && frame.data.messages) {
        out.set(id, [...(out.get(id) || []), ...frame.data.messages]);
      }
      if (!String(frame.id).includes(":")) done();
    };
    ws.onerror = done;
    ws.onclose = done;
  });
}

/** The connection indicator's words for a Stream status. */
export function statusText(status, detail) {
  switch (status) {
    case "live":
      return "Connected";
    case "connecting":
      return "Connecting…";
    case "reconnecting":
      return "Connection lost, reconnecting…";
    case "stopped":
      return detail?.reason || "Disconnected";
    default:
      return status;
  }
}

/**
 * Sends typing start/stop around a text box: start on the first key after
 * a pause, stop after `idleMs` without typing or when the text is sent.
 */
export class TypingNotifier {
  constructor(send, idleMs = 4000) {
    this.send = send;
    this.idleMs = idleMs;
    this.active = null;
    this.timer = null;
  }

  /** `kind` tells which notifications to send (e.g. "All" or "Agents"). */
  input(kind, empty) {
    clearTimeout(this.timer);
    if (empty) return this.stop();
    if (this.active !== kind) {
      if (this.active) this.send(this.active, false);
      this.active = kind;
      this.send(kind, true);
    }
    this.timer = setTimeout(() => this.stop(), this.idleMs);
  }

  stop() {
    clearTimeout(this.timer);
    if (this.active) this.send(this.active, false);
    this.active = null;
  }

  /** The text was sent: a message ends typing on the other side by itself. */
  sent() {
    clearTimeout(this.timer);
    this.active = null;
  }
}
