// The customer widget: start a chat, see the transcript (the customer view
// only: what is visible to everyone in this session), send messages, see
// who is typing, survive a lost connection without losing or doubling a
// line.
import {
  api, clock, describe, el, openStream, safeUrl, SessionView, statusText, TypingNotifier,
} from "./chatgate.js";

const CHAT_KEY = "chatgate.widget.chat";
const ENDED = new Set(["Completed", "Finished", "Ended", "Closed"]);
const $ = (id) => document.getElementById(id);

const state = {
  /** {sessionId, participantId, token} */
  chat: null,
  view: null,
  stream: null,
  typing: null,
  left: false,
  renderQueued: false,
};

// Reached by the end-to-end tests (and handy in the console).
window.chatgateWidget = state;

function init() {
  $("start").addEventListener("submit", startChat);
  $("leave").addEventListener("click", leave);
  $("restart").addEventListener("click", restart);
  wireComposer();
  const saved = readSaved();
  if (saved) openChat(saved);
  setInterval(renderTyping, 2000);
}

function readSaved() {
  try {
    const c = JSON.parse(sessionStorage.getItem(CHAT_KEY));
    return c?.sessionId && c?.token ? c : null;
  } catch {
    return null;
  }
}

async function startChat(e) {
  e.preventDefault();
  const nickname = $("nickname").value.trim();
  const message = $("first-message").value.trim();
  if (!nickname || !message) return;
  const button = e.submitter || $("start").querySelector("button");
  button.disabled = true;
  $("start-error").textContent = "";
  try {
    const res = await api("POST", "/api/v2/customer/sessions", { body: { nickname, message } });
    const chat = { sessionId: res.sessionId, participantId: res.participantId, token: res.token };
    sessionStorage.setItem(CHAT_KEY, JSON.stringify(chat));
    openChat(chat);
  } catch (err) {
    $("start-error").textContent = `The chat could not be started: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

function openChat(chat) {
  state.chat = chat;
  state.view = new SessionView(chat.sessionId);
  state.left = false;
  $("start").hidden = true;
  $("chat").hidden = false;
  $("conn").hidden = false;
  $("restart").hidden = true;
  $("leave").hidden = false;
  $("transcript").replaceChildren();
  // /ws, or long-polling where a WebSocket cannot be opened.
  openStream(state, {
    token: chat.token,
    onNotification: (data) => {
      state.view.apply(data);
      scheduleRender();
    },
    onStatus: (s, detail) => setConn(s, statusText(s, detail)),
  });
  render();
  $("composer-text").focus();
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

function agentsOf(view) {
  return view.participants.filter((p) => p.type !== "Customer");
}

function render() {
  const view = state.view;
  if (!view) return;
  const agents = agentsOf(view).map((p) => p.nickname).filter(Boolean);
  const ended = ENDED.has(view.state) || state.left;
  $("widget-sub").textContent = ended
    ? "This chat has ended."
    : agents.length ? `You are chatting with ${agents.join(" and ")}.` : "Waiting for an agent…";
  renderTranscript(view);
  renderTyping();
  $("composer-text").disabled = ended;
  $("send").disabled = ended;
  $("leave").hidden = ended;
  $("restart").hidden = !ended;
}

function renderTranscript(view) {
  const list = $("transcript");
  const shown = new Set([...list.children].map((li) => li.dataset.index));
  let added = false;
  for (const m of view.lines()) {
    if (shown.has(String(m.index))) continue;
    const after = [...list.children].find((c) => Number(c.dataset.index) > Number(m.index));
    list.insertBefore(lineOf(m), after || null);
    added = true;
  }
  if (added) list.scrollTop = list.scrollHeight;
}

function lineOf(m) {
  const d = describe(m);
  const mine = m.from?.participantId === state.chat.participantId;
  const kind = d.event ? "event" : mine ? "mine" : "theirs";
  const url = d.url && safeUrl(d.url);
  return el("li", { class: `bubble bubble-${kind}`, dataset: { index: String(m.index), type: m.type } },
    d.event
      ? el("span", { class: "bubble-text" }, `${mine ? "You" : d.who} ${d.text}`)
      : [
        el("span", { class: "bubble-meta" }, el("span", { class: "line-who" }, mine ? "You" : d.who), " ", el("time", {}, clock(m))),
        el("span", { class: "bubble-text" }, url ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, d.text) : d.text),
      ]);
}

function renderTyping() {
  if (!state.view) return;
  const who = state.view.typists(state.chat.participantId);
  const text = who.map((t) => `${t.participant.nickname || "Someone"} is typing…`).join(" ");
  if ($("typing").textContent !== text) $("typing").textContent = text;
}

async function customerOp(operationName, params = {}) {
  return api("POST", `/api/v2/customer/sessions/${encodeURIComponent(state.chat.sessionId)}`, {
    token: state.chat.token,
    body: { operationName, ...params },
  });
}

function wireComposer() {
  const text = $("composer-text");
  state.typing = new TypingNotifier((_kind, start) => {
    customerOp(start ? "SendStartTypingNotification" : "SendStopTypingNotification").catch(() => {});
  });
  text.addEventListener("input", () => state.typing.input("All", text.value.trim() === ""));
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = text.value.trim();
    if (!body || !state.chat) return;
    state.typing.stop();
    $("chat-error").textContent = "";
    try {
      await customerOp("SendMessage", { text: body });
      text.value = "";
    } catch (err) {
      $("chat-error").textContent = `Not sent: ${err.message}`;
    }
    text.focus();
  });
}

async function leave() {
  if (!state.chat) return;
  try {
    await customerOp("Leave");
  } catch (err) {
    $("chat-error").textContent = `Could not end the chat: ${err.message}`;
    return;
  }
  state.left = true;
  state.typing.stop();
  state.stream?.stop();
  sessionStorage.removeItem(CHAT_KEY);
  render();
  $("restart").focus();
}

function restart() {
  state.stream?.stop();
  state.stream = null;
  state.chat = null;
  state.view = null;
  sessionStorage.removeItem(CHAT_KEY);
  $("chat").hidden = true;
  $("start").hidden = false;
  $("first-message").value = "";
  setConn("idle", "Not connected");
  $("conn").hidden = true;
  $("widget-sub").textContent = "We usually answer within a minute.";
  $("nickname").focus();
}

init();
