// The agent desktop: sign in (a demo agent in dev mode, or a token), see
// the sessions you are in, their transcripts with agent-only lines marked,
// who is typing, and act on a session with the operations its
// `capabilities` allow.
import {
  api, clock, describe, el, safeUrl, sessionIdOf, SessionView, statusText, Stream,
  TypingNotifier, fetchHistory, userIdOf,
} from "./chatgate.js";

const TOKEN_KEY = "chatgate.desk.token";
const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  me: null,
  role: null,
  stream: null,
  /** {users: [{id, name, path}], queues: [{id, name, path}]} */
  directory: { users: [], queues: [] },
  /** session id -> {view: SessionView, unread: number} */
  sessions: new Map(),
  selected: null,
  typing: null,
  renderQueued: false,
};

// Reached by the end-to-end tests (and handy in the console).
window.chatgateDesk = state;

/* ---------- sign in ---------- */

async function init() {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    if (token) signIn(token);
  });
  $("signout").addEventListener("click", signOut);
  $("demo-id-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("demo-id").value.trim();
    if (id) signInAsDemo(id);
  });
  wireConversation();
  wireActions();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else showSignIn();
  setInterval(() => state.selected && renderTyping(), 2000);
}

async function showSignIn() {
  $("signin").hidden = false;
  $("workspace").hidden = true;
  $("me").hidden = true;
  $("signout").hidden = true;
  setConn("idle", "Not connected");
  const { dev, agents } = await demoAgents();
  const list = $("demo-agents");
  list.replaceChildren();
  $("demo-agents-box").hidden = !dev;
  if (dev) {
    for (const u of agents) {
      list.append(el("li", {},
        el("button", {
          class: "btn agent-pick", type: "button", dataset: { agent: u.id },
          onclick: () => signInAsDemo(u.id),
        }, el("span", { class: "avatar", "aria-hidden": "true" }, initials(u.name)),
        el("span", {}, el("strong", {}, u.name), el("span", { class: "mono small" }, u.id)))));
    }
  }
}

/** Dev mode only: the directory's agents, read with a throwaway demo token. */
async function demoAgents() {
  let token;
  try {
    ({ token } = await api("GET", "/dev/token?role=agent&sub=demo-desk&ttl=300"));
  } catch {
    return { dev: false, agents: [] };
  }
  try {
    return { dev: true, agents: usersOf(await api("GET", "/api/v2/users", { token })) };
  } catch {
    return { dev: true, agents: [] };
  }
}

async function signInAsDemo(userId) {
  try {
    const q = new URLSearchParams({ role: "agent", sub: userId });
    const { token } = await api("GET", `/dev/token?${q}`);
    signIn(token);
  } catch (e) {
    $("signin-error").textContent = `Could not get a demo token: ${e.message}`;
  }
}

function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

function signIn(token) {
  const claims = claimsOf(token);
  if (!claims || !["agent", "supervisor"].includes(claims.role)) {
    $("signin-error").textContent = "This is not an agent token.";
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn();
    return;
  }
  $("signin-error").textContent = "";
  sessionStorage.setItem(TOKEN_KEY, token);
  state.token = token;
  state.me = claims.sub;
  state.role = claims.role;
  state.sessions.clear();
  state.selected = null;
  $("signin").hidden = true;
  $("workspace").hidden = false;
  $("signout").hidden = false;
  loadDirectory().then(() => {
    renderMe();
    scheduleRender();
  });
  renderMe();
  state.stream = new Stream({
    token,
    onNotification: onNotification,
    onStatus: (s, detail) => setConn(s, statusText(s, detail)),
    onWelcome: (w) => {
      state.me = w.sub;
      renderMe();
    },
  });
  state.stream.start();
  scheduleRender();
}

function signOut() {
  state.typing?.stop();
  state.stream?.stop();
  state.stream = null;
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  state.sessions.clear();
  state.selected = null;
  showSignIn();
}

function renderMe() {
  const mine = state.directory.users.find((u) => u.id === state.me);
  $("me").hidden = false;
  $("me").replaceChildren(
    el("span", { class: "avatar small", "aria-hidden": "true" }, initials(mine?.name || state.me)),
    el("span", {}, "Signed in as ", el("strong", {}, mine?.name || state.me)),
  );
}

/* ---------- directory ---------- */

function listOf(data, key) {
  if (Array.isArray(data)) return data;
  if (Array.isArray(data?.[key])) return data[key];
  return [];
}

function usersOf(data) {
  return listOf(data, "users").map((u) => {
    const id = u.id ?? u.userId ?? userIdOf(u);
    const full = [u.firstName, u.lastName].filter(Boolean).join(" ");
    return { id, name: u.nickname || u.userName || full || u.name || id, path: u.path || `/users/${id}` };
  });
}

function queuesOf(data) {
  return listOf(data, "queues").map((q) => {
    const id = q.id ?? q.queueId;
    return { id, name: q.name || q.nickname || id, path: q.path || `/queues/${id}` };
  });
}

async function loadDirectory() {
  const token = state.token;
  const [users, queues] = await Promise.allSettled([
    api("GET", "/api/v2/users", { token }),
    api("GET", "/api/v2/queues", { token }),
  ]);
  state.directory = {
    users: users.status === "fulfilled" ? usersOf(users.value) : [],
    queues: queues.status === "fulfilled" ? queuesOf(queues.value) : [],
  };
  renderTargets();
}

/* ---------- the stream ---------- */

function onNotification(data) {
  const id = sessionIdOf(data);
  if (!id) return;
  let entry = state.sessions.get(id);
  if (!entry) {
    entry = { view: new SessionView(id), unread: 0 };
    state.sessions.set(id, entry);
  }
  const { newLines } = entry.view.apply(data);
  if (id !== state.selected) entry.unread += newLines;
  if (!state.selected) state.selected = id;
  if (needsHistory(entry.view)) scheduleBackfill();
  scheduleRender();
}

/**
 * Whether the earlier lines of a session must be read: joined midway, or
 * offered a session (an invitation) whose lines came before the offer, so
 * no line of it reached this desktop yet.
 */
function needsHistory(view) {
  return view.missesHistory || (!view.backfilled && view.messages.size === 0 && view.state !== "Completed");
}

/**
 * Joined midway (a consult, a transfer, an invite): the live stream starts
 * at the join, so the earlier lines are read from a snapshot, once.
 */
function scheduleBackfill() {
  if (state.backfillQueued) return;
  state.backfillQueued = true;
  setTimeout(async () => {
    state.backfillQueued = false;
    const ids = [...state.sessions.values()].filter((e) => needsHistory(e.view)).map((e) => e.view.id);
    if (!ids.length || !state.token) return;
    for (const id of ids) state.sessions.get(id).view.backfilled = true;
    const history = await fetchHistory(state.token, ids);
    for (const [id, messages] of history) state.sessions.get(id)?.view.backfill(messages);
    scheduleRender();
  }, 50);
}

function setConn(s, text) {
  $("conn").dataset.state = s;
  $("conn-text").textContent = text;
}

function scheduleRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => {
    state.renderQueued = false;
    render();
  });
}

/* ---------- rendering ---------- */

function isMe(p) {
  return p.type === "Agent" && userIdOf(p) === state.me;
}

function customerName(view) {
  return view.participants.find((p) => p.type === "Customer")?.nickname || `Session ${view.id}`;
}

function myParticipant(view) {
  return view.participants.find(isMe) || null;
}

function render() {
  renderSessionList();
  renderConversation();
}

function renderSessionList() {
  const list = $("session-list");
  const entries = [...state.sessions.values()].sort((a, b) => b.view.firstSeen - a.view.firstSeen);
  $("no-sessions").hidden = entries.length > 0;
  $("session-count").textContent = entries.length ? `(${entries.length})` : "";
  list.replaceChildren(...entries.map(({ view, unread }) => {
    const last = view.lines().at(-1);
    const inIt = !!myParticipant(view);
    const current = view.id === state.selected;
    return el("li", {},
      el("button", {
        type: "button", class: "session-item", dataset: { session: view.id },
        "aria-current": current ? "true" : undefined,
        onclick: () => select(view.id),
      },
      el("span", { class: "session-line" },
        el("strong", { class: "session-name" }, customerName(view)),
        unread ? el("span", { class: "unread", "aria-label": `${unread} unread` }, String(unread)) : null),
      el("span", { class: "session-line" },
        el("span", { class: `badge state-${view.state.toLowerCase()}` }, view.state),
        inIt ? null : el("span", { class: "badge badge-muted" }, "you left")),
      last ? el("span", { class: "preview" }, previewOf(last)) : null));
  }));
}

function previewOf(m) {
  const d = describe(m);
  const text = `${d.who}${d.event ? " " : ": "}${d.text}`;
  return m.visibility === "Agents" ? `[agents only] ${text}` : text;
}

function select(id) {
  if (state.selected !== id) state.typing?.stop();
  state.selected = id;
  const entry = state.sessions.get(id);
  if (entry) entry.unread = 0;
  render();
  $("composer-text").focus();
}

function renderConversation() {
  const entry = state.sessions.get(state.selected);
  $("conv-empty").hidden = !!entry;
  $("conv").hidden = !entry;
  $("actions").hidden = !entry;
  if (!entry) return;
  const view = entry.view;
  entry.unread = 0;
  $("conv-title").textContent = customerName(view);
  $("conv-state").textContent = view.state;
  $("conv-state").className = `badge state-${view.state.toLowerCase()}`;
  $("conv-id").textContent = view.id;
  renderParticipants(view);
  renderTranscript(view);
  renderTyping();
  renderComposer(view);
  renderActions(view);
}

function renderParticipants(view) {
  const caps = capabilitiesOf(view);
  $("participants").replaceChildren(...view.participants.map((p) => {
    const agentsOnly = p.visibility === "Agents";
    const removable = caps.has("RemoveParticipantFromConference") && p.type === "Agent" && !isMe(p);
    return el("li", { class: `chip${agentsOnly ? " chip-agents" : ""}`, dataset: { participant: p.participantId } },
      el("span", { class: "avatar small", "aria-hidden": "true" }, initials(p.nickname)),
      el("span", {}, p.nickname || p.type, isMe(p) ? " (you)" : ""),
      el("span", { class: "chip-type" }, p.type === "Customer" ? "customer" : "agent"),
      agentsOnly ? el("span", { class: "tag-agents" }, "agents only") : null,
      removable ? el("button", {
        type: "button", class: "chip-remove", "aria-label": `Remove ${p.nickname} from the conference`,
        onclick: () => operate("RemoveParticipantFromConference", { participantId: p.participantId }),
      }, "×") : null);
  }));
}

function renderTranscript(view) {
  const list = $("transcript");
  if (list.dataset.session !== view.id) {
    list.replaceChildren();
    list.dataset.session = view.id;
  }
  const shown = new Set([...list.children].map((li) => li.dataset.index));
  let added = false;
  for (const m of view.lines()) {
    if (shown.has(String(m.index))) continue;
    const li = lineOf(m);
    const after = [...list.children].find((c) => Number(c.dataset.index) > Number(m.index));
    list.insertBefore(li, after || null);
    added = true;
  }
  if (added) list.scrollTop = list.scrollHeight;
}

function lineOf(m) {
  const d = describe(m);
  const agentsOnly = m.visibility === "Agents";
  const mine = m.from && isMe(m.from);
  const kind = d.event ? "event" : m.from?.type === "Customer" ? "customer" : "agent";
  const classes = ["line", `line-${kind}`, agentsOnly ? "line-agents" : "", mine ? "line-mine" : ""];
  const attrs = {
    class: classes.filter(Boolean).join(" "),
    dataset: { index: String(m.index), visibility: m.visibility || "All", type: m.type },
  };
  const tag = agentsOnly ? el("span", { class: "tag-agents" }, "agents only") : null;
  const time = el("time", { class: "line-time" }, clock(m));
  if (d.event) {
    return el("li", attrs, el("span", { class: "line-who" }, d.who), ` ${d.text}`, tag, time);
  }
  const url = d.url && safeUrl(d.url);
  return el("li", attrs,
    el("div", { class: "line-meta" }, el("span", { class: "line-who" }, mine ? `${d.who} (you)` : d.who), tag, time),
    el("div", { class: "line-text" }, url ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, d.text) : d.text));
}

function renderTyping() {
  const entry = state.sessions.get(state.selected);
  const line = $("typing");
  if (!entry) return void (line.textContent = "");
  const mine = myParticipant(entry.view)?.participantId;
  const who = entry.view.typists(mine);
  const text = who.map((t) => `${t.participant.nickname || "Someone"} is typing…${t.visibility === "Agents" ? " (agents only)" : ""}`).join(" ");
  if (line.textContent !== text) line.textContent = text;
}

/**
 * Operations a consulting agent is not offered: a notification's
 * `capabilities` are the session's lead agent's (one notification serves
 * every agent of the session), but a consultant is invisible to the
 * customer and takes no step the customer would see; the originator
 * transfers, the consultant may leave. (The engine refuses the rest.)
 */
const NOT_FOR_CONSULTANTS = new Set([
  "SendMessage", "SendUrl", "SendStartTypingNotification", "SendStopTypingNotification",
  "Transfer", "Invite", "Consult", "Complete", "RemoveParticipantFromConference",
]);

/** What I may do in this session now. */
function capabilitiesOf(view) {
  const me = myParticipant(view);
  if (!me) return new Set();
  const caps = view.session.capabilities || [];
  return new Set(me.visibility === "Agents" ? caps.filter((c) => !NOT_FOR_CONSULTANTS.has(c)) : caps);
}

function renderComposer(view) {
  const caps = capabilitiesOf(view);
  const me = myParticipant(view);
  const canAll = caps.has("SendMessage");
  const canAgents = caps.has("SendToAgents");
  const all = document.querySelector('input[name="audience"][value="All"]');
  const agents = document.querySelector('input[name="audience"][value="Agents"]');
  all.disabled = !canAll;
  agents.disabled = !canAgents;
  if (all.checked && !canAll && canAgents) agents.checked = true;
  if (agents.checked && !canAgents && canAll) all.checked = true;
  const usable = canAll || canAgents;
  $("composer-text").disabled = !usable;
  $("send").disabled = !usable;
  $("composer-text").placeholder = !me
    ? "You are no longer in this session."
    : usable ? "Type a message… (Enter sends, Shift+Enter for a new line)"
      : caps.has("Accept") ? "Accept the chat to answer." : "Sending is not possible in this state.";
  $("composer").classList.toggle("composer-agents", audience() === "Agents");
}

function audience() {
  return document.querySelector('input[name="audience"]:checked')?.value || "All";
}

function renderTargets() {
  const select = $("target");
  const users = state.directory.users.filter((u) => u.id !== state.me);
  const groups = [];
  if (users.length) {
    groups.push(el("optgroup", { label: "Agents" },
      users.map((u) => el("option", { value: u.path }, u.name))));
  }
  if (state.directory.queues.length) {
    groups.push(el("optgroup", { label: "Queues" },
      state.directory.queues.map((q) => el("option", { value: q.path }, `${q.name} (queue)`))));
  }
  const before = select.value;
  select.replaceChildren(...groups);
  if (!groups.length) select.append(el("option", { value: "" }, "Directory unavailable"));
  if (before) select.value = before;
}

function renderActions(view) {
  const caps = capabilitiesOf(view);
  const has = (...ops) => ops.some((o) => caps.has(o));
  for (const b of document.querySelectorAll("#actions [data-op]")) b.hidden = !caps.has(b.dataset.op);
  // An invitation (auto-accept off): only Accept or Reject apply.
  $("invite-ops").hidden = !has("Accept", "Reject");
  $("target-ops").hidden = !has("Consult", "Transfer", "Invite");
  $("url-op").hidden = !has("SendUrl");
  $("disposition-op").hidden = !has("SetDisposition");
  $("userdata-op").hidden = !has("AttachUserData", "UpdateUserData", "DeleteUserData");
  $("end-ops").hidden = !has("Leave", "Complete");
  const data = view.session.userData || {};
  $("userdata").replaceChildren(...Object.entries(data).map(([k, v]) => el("tr", {},
    el("th", { scope: "row" }, k),
    el("td", {}, typeof v === "string" ? v : JSON.stringify(v)),
    el("td", {}, caps.has("DeleteUserData") ? el("button", {
      type: "button", class: "btn-icon", "aria-label": `Delete ${k}`,
      onclick: () => operate("DeleteUserData", { keys: [k] }),
    }, "×") : null))));
}

/* ---------- operations ---------- */

async function operate(operationName, params = {}, { quiet = false } = {}) {
  const id = state.selected;
  if (!id) return null;
  const out = $("op-result");
  try {
    const res = await api("POST", `/api/v2/me/facebooksessions/${encodeURIComponent(id)}`, {
      token: state.token,
      body: { operationName, ...params },
    });
    if (!quiet) {
      out.className = "op-result ok";
      out.textContent = `${operationName}: done (reference ${res?.referenceId ?? "?"})`;
    }
    return res;
  } catch (e) {
    out.className = "op-result error";
    out.textContent = `${operationName} failed: ${e.message}`;
    return null;
  }
}

function wireConversation() {
  const text = $("composer-text");
  state.typing = new TypingNotifier((kind, start) => {
    const op = kind === "Agents"
      ? (start ? "SendStartTypingToAgentsNotification" : "SendStopTypingToAgentsNotification")
      : (start ? "SendStartTypingNotification" : "SendStopTypingNotification");
    const entry = state.sessions.get(state.selected);
    if (entry && capabilitiesOf(entry.view).has(op)) operate(op, {}, { quiet: true });
  });
  text.addEventListener("input", () => state.typing.input(audience(), text.value.trim() === ""));
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  for (const r of document.querySelectorAll('input[name="audience"]')) {
    r.addEventListener("change", () => {
      state.typing.stop();
      $("composer").classList.toggle("composer-agents", audience() === "Agents");
    });
  }
  $("composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = text.value.trim();
    if (!body) return;
    state.typing.stop();
    const op = audience() === "Agents" ? "SendToAgents" : "SendMessage";
    const res = await operate(op, { text: body }, { quiet: true });
    if (res) text.value = "";
    text.focus();
  });
}

function wireActions() {
  for (const b of document.querySelectorAll("#target-ops [data-op]")) {
    b.addEventListener("click", () => {
      const target = $("target").value;
      if (target) operate(b.dataset.op, { targetPath: target });
    });
  }
  for (const b of document.querySelectorAll("#end-ops [data-op]")) {
    b.addEventListener("click", () => operate(b.dataset.op));
  }
  $("accept-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const nickname = $("accept-nickname").value.trim();
    if (await operate("Accept", nickname ? { nickname } : {})) $("accept-nickname").value = "";
  });
  $("invite-ops").querySelector("[data-op=Reject]").addEventListener("click", () => operate("Reject"));
  $("url-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (await operate("SendUrl", { url: $("url-input").value })) $("url-input").value = "";
  });
  $("disposition-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (await operate("SetDisposition", { disposition: $("disposition-input").value })) {
      $("disposition-input").value = "";
    }
  });
  $("userdata-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("ud-key").value.trim();
    if (!key) return;
    const entry = state.sessions.get(state.selected);
    const exists = entry && key in (entry.view.session.userData || {});
    const caps = entry ? capabilitiesOf(entry.view) : new Set();
    const op = exists && caps.has("UpdateUserData") ? "UpdateUserData" : "AttachUserData";
    if (await operate(op, { userData: { [key]: $("ud-value").value } })) {
      $("ud-key").value = "";
      $("ud-value").value = "";
    }
  });
}

function initials(name) {
  const parts = String(name || "?").replace(/[^\p{L}\p{N} ]/gu, " ").trim().split(/\s+/);
  const one = parts[0] || "?";
  // "Agent2" -> "A2": a trailing number tells such names apart.
  const digit = /\d$/.test(one) && one.length > 1 ? one[0] + one.at(-1) : one.slice(0, 2);
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : digit;
  return letters.toUpperCase();
}

init();
