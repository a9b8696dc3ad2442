// End-to-end tests of the agent desktop (/) and the customer widget
// (/widget) in headless Chromium, against a running chatgate in dev mode.
//
//   node e2e.mjs <base-url> [scenario ...]
//
// Scenarios: seed (the seed's consult fed through the ingest), consult
// (customer, agent and consultant through the engine's operations, with a
// transfer), reconnect (cut sockets; nothing lost or doubled), invitation
// (a chatgate with CHATGATE_AUTO_ACCEPT off: a chat offered, rejected,
// offered again and accepted). Without a name, all run except invitation,
// which needs its own server. Prints one line per scenario and "N passed, N failed";
// exits non-zero on any failure, or when Chromium or playwright-core is
// missing (a test that cannot run must not pass).
//
// CHATGATE_SCREENSHOTS=<dir>: where the consult scenario writes
// agent-desktop.png and customer-widget.png (default: a temporary folder).
// CHATGATE_CHROMIUM: the browser binary (default /usr/bin/chromium).

import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHATGATE_CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 20_000;

const TESTNAME = "5e101708f14442c7ab79814bb4f799b2";
const AGENT2 = "e2c90c960d3d40c79684818983ceb314";

/* ---------- harness ---------- */

function fail(message) {
  throw new Error(message);
}

function check(cond, message) {
  if (!cond) fail(message);
}

function sample(name) {
  return JSON.parse(readFileSync(join(here, "..", "..", "proto-samples", name), "utf8"));
}

/** Chromium as the project runs it: headless, no sandbox, nothing phoning home. */
async function launch() {
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (e) {
    fail(`playwright-core is not installed (run npm ci in tests/browser): ${e.message}`);
  }
  check(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  // launch() gives every run a fresh temporary user-data-dir of its own.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

/** Records everything the page ever rendered as text, for privacy checks. */
function recordRenderedText() {
  window.__shown = [];
  const take = (s) => s && window.__shown.push(s);
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === "characterData") take(m.target.data);
      else if (m.type === "attributes") take(m.target.getAttribute(m.attributeName));
      for (const n of m.addedNodes) take(n.textContent);
    }
  }).observe(document, {
    subtree: true, childList: true, characterData: true,
    attributes: true, attributeFilter: ["aria-label", "title", "placeholder"],
  });
}

/** A page in a context of its own (its own storage, as a separate person). */
async function openPage(browser, url, { viewport = { width: 1360, height: 820 }, init } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  await page.addInitScript(recordRenderedText);
  if (init) await page.addInitScript(init.fn, init.arg);
  const frames = [];
  page.on("websocket", (ws) => ws.on("framereceived", (f) => frames.push(String(f.payload))));
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // Console errors too: a refused request, a content security policy violation.
  page.on("console", (m) => m.type() === "error" && errors.push(`console: ${m.text()}`));
  await page.goto(url);
  return { page, context, frames, errors };
}

/** The transcript as rendered: [{index, visibility, type, text}]. */
function transcript(page) {
  return page.$$eval("#transcript > li", (lis) => lis.map((li) => ({
    index: li.dataset.index,
    visibility: li.dataset.visibility,
    type: li.dataset.type,
    text: li.innerText.replace(/\s+/g, " ").trim(),
    body: li.querySelector(".line-text, .bubble-meta + .bubble-text")?.innerText.trim() ?? null,
  })));
}

async function waitLine(page, text) {
  await page.locator("#transcript > li", { hasText: text }).first().waitFor();
}

async function waitText(page, selector, text) {
  await page.waitForFunction(
    ([sel, t]) => document.querySelector(sel)?.textContent.includes(t),
    [selector, text],
  );
}

async function waitEmpty(page, selector) {
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent.trim() === "", selector);
}

async function api(base, method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  check(res.ok, `${method} ${path}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function devToken(base, role, sub, sid) {
  const q = new URLSearchParams({ role, sub });
  if (sid) q.set("sid", sid);
  return (await api(base, "GET", `/dev/token?${q}`)).token;
}

/** Signs a desktop in as a demo agent, with the keyboard. */
async function signInAsDemo(page, userId) {
  const pick = page.locator(`button[data-agent="${userId}"]`);
  await pick.focus();
  await page.keyboard.press("Enter");
  await page.locator("#conn[data-state=live]").waitFor();
}

/** Signs a desktop in by typing an agent id into the dev-mode form. */
async function signInById(page, userId) {
  await page.fill("#demo-id", userId);
  await page.press("#demo-id", "Enter");
  await page.locator("#conn[data-state=live]").waitFor();
}

/** Signs a desktop in with a pasted token. */
async function signInWithToken(page, token) {
  await page.fill("#token-input", token);
  await page.click("#token-form button[type=submit]");
  await page.locator("#conn[data-state=live]").waitFor();
}

/** Types into the composer key by key (typing notifications go out), then Enter. */
async function say(page, text, { audience } = {}) {
  if (audience) await page.check(`input[name=audience][value=${audience}]`);
  await page.locator("#composer-text").focus();
  await page.keyboard.type(text, { delay: 5 });
  await page.keyboard.press("Enter");
  await waitLine(page, text);
}

function everything(p) {
  return p.page.evaluate(() => window.__shown.join("\n") + "\n" + document.body.innerText);
}

/** Throws when the customer page shows, or was ever sent, one of `secrets`. */
async function assertNeverShown(customer, secrets, when) {
  const shown = await everything(customer);
  const sent = customer.frames.join("\n");
  for (const s of secrets) {
    check(!shown.includes(s), `customer page rendered "${s}" ${when}`);
    check(!sent.includes(s), `customer socket received "${s}" ${when}`);
  }
}

/** The messages carried by raw frames. */
function messagesOf(frames) {
  const out = [];
  for (const raw of frames) {
    try {
      out.push(...(JSON.parse(raw)?.data?.messages || []));
    } catch {
      // not JSON: not a notification
    }
  }
  return out;
}

/** Typing notifications of others among raw frames. */
function othersTyping(frames, selfId) {
  return messagesOf(frames)
    .filter((m) => /^Typing/.test(m.type) && m.from?.participantId !== selfId)
    .map((m) => JSON.stringify(m));
}

async function screenshot(p, name) {
  const dir = resolve(process.env.CHATGATE_SCREENSHOTS || join(tmpdir(), "chatgate-screenshots"));
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  await p.page.screenshot({ path });
  console.log(`  screenshot: ${path}`);
}

function noPageErrors(...pages) {
  for (const p of pages) check(p.errors.length === 0, `page errors: ${p.errors.join("; ")}`);
}

/**
 * The ids a page's stream took in: after a resume, none that came before,
 * none twice. (The frames of one snapshot may share an id: a customer's
 * both carry the current one.)
 */
async function assertNoDoubledFrames(p, label) {
  const got = await p.page.evaluate(() => (window.chatgateDesk?.stream || window.chatgateWidget?.stream).received);
  const first = got.filter((r) => r.conn === 1).map((r) => r.id);
  const later = got.filter((r) => r.conn > 1).map((r) => r.id);
  check(later.length > 0, `${label}: nothing arrived after the reconnect`);
  const seen = new Set(first);
  for (const id of later) {
    check(!seen.has(id), `${label}: notification ${id} arrived twice (before: ${first}; after: ${later})`);
    seen.add(id);
  }
}

/** One cut: the page connected twice, resumed the second time, took in no id twice. */
async function assertResumedOnce(p, label) {
  const resumed = await p.page.evaluate(() => (window.chatgateDesk?.stream || window.chatgateWidget?.stream).welcomes.map((w) => w.resumed));
  check(JSON.stringify(resumed) === "[false,true]", `${label} welcomes (resumed): ${resumed}`);
  await assertNoDoubledFrames(p, label);
}

/* ---------- scenarios ---------- */

/**
 * The seed's consult, fed through the ingest as any chat server would:
 * the agent desktops mark the consultant and agent-only lines, the widget
 * never sees them.
 */
async function seedScenario(browser, base) {
  const SID = "0002EaAY01MT007C";
  const pu = sample("consult-participants-updated.json");
  const [customerP, agent2P, testnameP] = pu.facebooksession.participants;
  const before = structuredClone(pu);
  before.facebooksession.participants = [customerP, testnameP];
  const msg = (index, from, visibility, text, type = "Text") => ({
    notificationType: "NewMessages", messageType: "MessageLogUpdated",
    facebooksessionPath: `/facebooksessions/${SID}`,
    messages: [{ index, type, from, visibility, text, timestamp: "2015-10-20T16:14:41.000+0300", timestampSeconds: 1445346881 }],
  });
  const service = await devToken(base, "service", "e2e-upstream");
  const ingest = (items) => api(base, "POST", "/upstream/events", { token: service, body: items });

  await ingest([before, msg(1, customerP, "All", "Hello, I have a question"), msg(2, testnameP, "All", "Hi Vitaliy, how can I help?")]);

  const customerToken = await devToken(base, "customer", customerP.id, SID);
  const chat = { sessionId: SID, participantId: customerP.participantId, token: customerToken };
  const customer = await openPage(browser, `${base}/widget`, {
    viewport: { width: 420, height: 760 },
    init: { fn: (c) => sessionStorage.getItem("chatgate.widget.chat") || sessionStorage.setItem("chatgate.widget.chat", c), arg: JSON.stringify(chat) },
  });
  const agent = await openPage(browser, `${base}/`);
  await signInById(agent.page, TESTNAME);
  await waitLine(agent.page, "Hi Vitaliy");
  await waitLine(customer.page, "Hi Vitaliy");

  // The consult: Agent2 joins for agents only, says something, types.
  await ingest([pu, sample("consult-new-messages.json"), msg(5, agent2P, "Agents", "Seed secret: refund approved"),
    msg(6, agent2P, "Agents", undefined, "TypingStarted")]);
  await waitLine(agent.page, "Seed secret");
  const lines = await transcript(agent.page);
  const secret = lines.find((l) => l.text.includes("Seed secret"));
  check(secret.visibility === "Agents" && /agents only/i.test(secret.text), `agent-only line not marked: ${JSON.stringify(secret)}`);
  const chip = agent.page.locator("#participants li", { hasText: "Agent2" });
  await chip.waitFor();
  check(/agents only/i.test(await chip.innerText()), "the consultant's chip is not marked agents only");
  await waitText(agent.page, "#typing", "Agent2 is typing… (agents only)");

  // The customer meanwhile: a visible line after the consult still arrives,
  // numbered without a gap; nothing of the consult ever does.
  await ingest([msg(7, testnameP, "All", "Thanks for waiting")]);
  await waitLine(customer.page, "Thanks for waiting");
  await assertNeverShown(customer, ["Agent2", "Seed secret", "typing"], "during the seed consult");
  const seen = await transcript(customer.page);
  check(JSON.stringify(seen.map((l) => l.index)) === JSON.stringify(["1", "2", "3"]),
    `customer indices not 1,2,3: ${JSON.stringify(seen)}`);

  // The widget's socket is cut; what it missed arrives on resume, once.
  await customer.page.evaluate(() => window.chatgateWidget.stream.cut({ hold: true }));
  await customer.page.locator("#conn[data-state=reconnecting]").waitFor();
  await ingest([msg(8, testnameP, "All", "Are you still there?"), msg(9, agent2P, "Agents", "Second secret"),
    msg(10, testnameP, "All", "I will wait")]);
  await waitLine(agent.page, "I will wait");
  await customer.page.evaluate(() => window.chatgateWidget.stream.release());
  await waitLine(customer.page, "I will wait");
  const after = await transcript(customer.page);
  check(JSON.stringify(after.map((l) => l.index)) === JSON.stringify(["1", "2", "3", "4", "5"]),
    `customer lines after the cut: ${JSON.stringify(after)}`);
  await assertResumedOnce(customer, "customer");
  await assertNeverShown(customer, ["Second secret"], "after the cut");

  // The desktop's socket is cut; the same.
  const agentBefore = await lineTexts(agent.page);
  await agent.page.evaluate(() => window.chatgateDesk.stream.cut({ hold: true }));
  await agent.page.locator("#conn[data-state=reconnecting]").waitFor();
  await ingest([msg(11, customerP, "All", "Yes, still here"), msg(12, agent2P, "Agents", "Third secret")]);
  await waitLine(customer.page, "Yes, still here");
  await agent.page.evaluate(() => window.chatgateDesk.stream.release());
  await waitLine(agent.page, "Third secret");
  const agentAfter = await lineTexts(agent.page);
  check(JSON.stringify(agentAfter.slice(0, agentBefore.length)) === JSON.stringify(agentBefore) &&
    agentAfter.length === agentBefore.length + 2, `agent lines after the cut: ${JSON.stringify(agentAfter)}`);
  await assertResumedOnce(agent, "agent");
  noPageErrors(customer, agent);
  await customer.context.close();
  await agent.context.close();
}

/**
 * The whole consult through the engine, by three people: the customer
 * starts a chat, the agent answers, consults Agent2, both talk and type
 * for agents only, the agent transfers to Agent2.
 */
async function consultScenario(browser, base) {
  const customer = await openPage(browser, `${base}/widget`, { viewport: { width: 420, height: 760 } });
  const agent = await openPage(browser, `${base}/`);
  const consultant = await openPage(browser, `${base}/`);
  await signInAsDemo(agent.page, TESTNAME);
  await signInWithToken(consultant.page, await devToken(base, "agent", AGENT2));

  // The customer starts a chat, with the keyboard only.
  await customer.page.locator("#nickname").focus();
  await customer.page.keyboard.type("Vitaliy");
  await customer.page.keyboard.press("Tab");
  await customer.page.keyboard.type("Hello, my parcel has not arrived");
  await customer.page.keyboard.press("Tab");
  await customer.page.keyboard.press("Enter");
  await waitLine(customer.page, "my parcel has not arrived");
  await customer.page.locator("#conn[data-state=live]").waitFor();

  // It is routed to TestName, whose desktop shows and selects it.
  await waitLine(agent.page, "my parcel has not arrived");
  await waitText(agent.page, "#conv-title", "Vitaliy");
  await waitText(customer.page, "#widget-sub", "TestName");

  // Visible typing and answer reach the customer.
  await agent.page.locator("#composer-text").focus();
  await agent.page.keyboard.type("Hi Vitaliy", { delay: 5 });
  await waitText(customer.page, "#typing", "TestName is typing");
  await agent.page.keyboard.type(", let me check that for you.");
  await agent.page.keyboard.press("Enter");
  await waitLine(customer.page, "let me check that for you");
  await waitEmpty(customer.page, "#typing");
  await say(customer.page, "Thank you!");
  await waitLine(agent.page, "Thank you!");
  const framesMark = customer.frames.length;
  const shownMark = await customer.page.evaluate(() => window.__shown.length);

  // Consult Agent2 through the picker.
  await agent.page.selectOption("#target", `/users/${AGENT2}`);
  await agent.page.click("#target-ops [data-op=Consult]");
  await waitText(agent.page, "#op-result", "Consult: done");
  await waitLine(consultant.page, "my parcel has not arrived");
  const chip = agent.page.locator("#participants li", { hasText: "Agent2" });
  await chip.waitFor();
  check(/agents only/i.test(await chip.innerText()), "the consultant is not marked agents only on the agent's desktop");
  check(await consultant.page.isDisabled("input[name=audience][value=All]"),
    "a consultant can pick 'Customer and agents'");

  // Agent-only talk and typing, both ways.
  await say(agent.page, "Can you take this one? Parcel lost, refund case.", { audience: "Agents" });
  await waitLine(consultant.page, "Parcel lost, refund case");
  const line = (await transcript(consultant.page)).find((l) => l.text.includes("Parcel lost"));
  check(line.visibility === "Agents" && /agents only/i.test(line.text), `agent-only line not marked: ${JSON.stringify(line)}`);
  await consultant.page.locator("#composer-text").focus();
  await consultant.page.keyboard.type("Sure, I know the courier", { delay: 5 });
  await waitText(agent.page, "#typing", "Agent2 is typing… (agents only)");
  await consultant.page.keyboard.press("Enter");
  await waitLine(agent.page, "I know the courier");
  await waitEmpty(agent.page, "#typing");
  await agent.page.locator("#composer-text").focus();
  await agent.page.keyboard.type("Great, transferring", { delay: 5 });
  await waitText(consultant.page, "#typing", "TestName is typing… (agents only)");

  // Mid-consult, both typing for agents only: the pictures for the README.
  await consultant.page.locator("#composer-text").focus();
  await consultant.page.keyboard.type("Give me a minute", { delay: 5 });
  await waitText(agent.page, "#typing", "Agent2 is typing… (agents only)");
  await say(customer.page, "Is anyone there?");
  await waitLine(agent.page, "Is anyone there?");
  await waitLine(consultant.page, "Is anyone there?");
  await screenshot(agent, "agent-desktop.png");
  await screenshot(customer, "customer-widget.png");
  await consultant.page.fill("#composer-text", "");

  // Before the transfer the customer saw none of it.
  const secrets = ["Parcel lost, refund case", "I know the courier", "Great, transferring", "Give me a minute"];
  await assertNeverShown(customer, [...secrets, "Agent2", AGENT2], "before the transfer");
  const shownSince = await customer.page.evaluate(
    (n) => `${window.__shown.slice(n).join("\n")}\n${document.body.innerText}`, shownMark);
  check(!/typing/i.test(shownSince), "the customer's page showed typing during the consult");
  const self = await customer.page.evaluate(() => window.chatgateWidget.chat.participantId);
  const typing = othersTyping(customer.frames.slice(framesMark), self);
  check(typing.length === 0, `the customer was sent typing during the consult: ${typing.join("; ")}`);

  // The agent transfers to the consultant.
  await agent.page.fill("#composer-text", "");
  await agent.page.selectOption("#target", `/users/${AGENT2}`);
  await agent.page.click("#target-ops [data-op=Transfer]");
  await waitText(customer.page, "#widget-sub", "Agent2");
  await waitText(agent.page, "#session-list", "you left");
  await consultant.page.waitForFunction(() => !document.querySelector("input[name=audience][value=All]").disabled);
  await say(consultant.page, "Hello Vitaliy, I am taking over.", { audience: "All" });
  await waitLine(customer.page, "I am taking over");
  check((await everything(customer)).includes("Agent2"), "the customer does not see the consultant after the transfer");
  await assertNeverShown(customer, secrets, "after the transfer");

  // The new owner wraps up: user data, disposition, complete.
  await consultant.page.fill("#ud-key", "OrderId");
  await consultant.page.fill("#ud-value", "A-1042");
  await consultant.page.press("#ud-value", "Enter");
  await waitText(consultant.page, "#userdata", "A-1042");
  await consultant.page.fill("#disposition-input", "Refund issued");
  await consultant.page.press("#disposition-input", "Enter");
  await waitText(consultant.page, "#op-result", "SetDisposition: done");
  await consultant.page.click("#end-ops [data-op=Complete]");
  await waitText(consultant.page, "#conv-state", "Completed");
  await waitText(customer.page, "#widget-sub", "This chat has ended");
  await assertNeverShown(customer, ["A-1042", "OrderId", "Refund issued"], "(user data and disposition)");

  // Not even a gap in the customer's numbering (typing takes indices too,
  // so the raw frames are checked, not the lines).
  const indices = [...new Set(messagesOf(customer.frames).map((m) => m.index))].sort((a, b) => a - b);
  check(indices.every((v, i) => v === i + 1), `the customer's message indices have gaps: ${indices}`);
  noPageErrors(customer, agent, consultant);
  for (const p of [customer, agent, consultant]) await p.context.close();
}

/** Lines a page shows, as text, in order. */
async function lineTexts(page) {
  return (await transcript(page)).map((l) => `${l.index}|${l.text}`);
}

/**
 * Cut sockets: what happens while a page is offline arrives once it is
 * back (resumed with since), and nothing arrives twice.
 */
async function reconnectScenario(browser, base) {
  const customer = await openPage(browser, `${base}/widget`, { viewport: { width: 420, height: 760 } });
  const agent = await openPage(browser, `${base}/`);
  await signInAsDemo(agent.page, TESTNAME);
  await customer.page.fill("#nickname", "Ana");
  await customer.page.fill("#first-message", "Hi, is my order shipped?");
  await customer.page.click("#start button[type=submit]");
  await waitLine(agent.page, "is my order shipped");
  await say(agent.page, "Let me look.");
  await waitLine(customer.page, "Let me look.");

  // The customer's socket is cut and held down; the agent talks meanwhile.
  await customer.page.evaluate(() => window.chatgateWidget.stream.cut({ hold: true }));
  await customer.page.locator("#conn[data-state=reconnecting]").waitFor();
  const missed = ["It shipped yesterday.", "Tracking number 1Z999.", "Anything else?"];
  for (const m of missed) await say(agent.page, m, { audience: "All" });
  await say(agent.page, "Agents-only note while the customer is away", { audience: "Agents" });
  await customer.page.evaluate(() => window.chatgateWidget.stream.release());
  await customer.page.locator("#conn[data-state=live]").waitFor();
  await waitLine(customer.page, "Anything else?");
  await assertResumedOnce(customer, "customer");
  // Line for line what the agent sees as visible to everyone.
  const shape = (lines) => lines.map((l) => `${l.type}|${l.body ?? ""}`);
  const visible = shape((await transcript(agent.page)).filter((l) => l.visibility === "All"));
  const seen = await transcript(customer.page);
  check(JSON.stringify(shape(seen)) === JSON.stringify(visible),
    `the customer's lines differ from the visible log:\n${shape(seen).join("\n")}\nvs\n${visible.join("\n")}`);
  const indices = [...new Set(messagesOf(customer.frames).map((m) => m.index))].sort((a, b) => a - b);
  check(indices.every((v, i) => v === i + 1), `the customer's message indices have gaps: ${indices}`);
  for (const m of missed) check(seen.filter((l) => l.text.includes(m)).length === 1, `"${m}" is not on the customer's page exactly once`);
  await assertNeverShown(customer, ["Agents-only note"], "across the reconnect");

  // The agent's socket is cut; the customer talks meanwhile.
  const agentBefore = await lineTexts(agent.page);
  await agent.page.evaluate(() => window.chatgateDesk.stream.cut({ hold: true }));
  await agent.page.locator("#conn[data-state=reconnecting]").waitFor();
  const said = ["No, that is all.", "Thanks a lot!"];
  for (const m of said) await say(customer.page, m);
  await agent.page.evaluate(() => window.chatgateDesk.stream.release());
  await agent.page.locator("#conn[data-state=live]").waitFor();
  await waitLine(agent.page, "Thanks a lot!");
  const agentAfter = await lineTexts(agent.page);
  check(JSON.stringify(agentAfter.slice(0, agentBefore.length)) === JSON.stringify(agentBefore), "the agent's earlier lines changed");
  check(agentAfter.length === agentBefore.length + said.length, `agent lines: ${JSON.stringify(agentAfter)}`);
  await assertResumedOnce(agent, "agent");

  // A reload starts over from the snapshot: the same lines, once each.
  const customerLines = await lineTexts(customer.page);
  await customer.page.reload();
  await waitLine(customer.page, "Thanks a lot!");
  check(JSON.stringify(await lineTexts(customer.page)) === JSON.stringify(customerLines),
    "the customer's transcript differs after a reload");
  noPageErrors(customer, agent);
  await customer.context.close();
  await agent.context.close();
}

/**
 * No WebSocket in the customer's browser (window.WebSocket removed): the
 * widget chats over Bayeux long-polling; a cut loses and doubles nothing.
 */
async function longPollScenario(browser, base) {
  const noWebSocket = { fn: () => { delete window.WebSocket; window.WebSocket = undefined; }, arg: null };
  const customer = await openPage(browser, `${base}/widget`, { viewport: { width: 420, height: 760 }, init: noWebSocket });
  // Every Bayeux message the customer's page was sent, as the frames of a socket are.
  customer.page.on("response", async (r) => {
    if (!r.url().includes("/api/v2/notifications")) return;
    try {
      for (const m of await r.json()) customer.frames.push(JSON.stringify(m));
    } catch {
      // a request cut on its way has no body to read
    }
  });
  const agent = await openPage(browser, `${base}/`);
  await signInAsDemo(agent.page, TESTNAME);
  await customer.page.fill("#nickname", "Ana");
  await customer.page.fill("#first-message", "Hi, no WebSocket here");
  await customer.page.click("#start button[type=submit]");
  await waitLine(agent.page, "no WebSocket here");
  const transport = await customer.page.evaluate(() => window.chatgateWidget.stream.transport);
  check(transport === "long-polling", `the widget's transport: ${transport}`);
  check(customer.frames.length > 0, "nothing came over long-polling");
  await say(agent.page, "Hello Ana, long-polling works.");
  await waitLine(customer.page, "long-polling works");
  await say(customer.page, "Great, thanks.");
  await waitLine(agent.page, "Great, thanks.");

  // A cut held down while the agent talks, to everyone and to agents only.
  await customer.page.evaluate(() => window.chatgateWidget.stream.cut({ hold: true }));
  await customer.page.locator("#conn[data-state=reconnecting]").waitFor();
  const missed = ["It shipped yesterday.", "Tracking number 1Z999."];
  for (const m of missed) await say(agent.page, m, { audience: "All" });
  await say(agent.page, "Agents-only note over long-polling", { audience: "Agents" });
  await customer.page.evaluate(() => window.chatgateWidget.stream.release());
  await customer.page.locator("#conn[data-state=live]").waitFor();
  await waitLine(customer.page, "Tracking number 1Z999.");
  await assertResumedOnce(customer, "long-polling customer");
  const seen = await transcript(customer.page);
  for (const m of missed) check(seen.filter((l) => l.text.includes(m)).length === 1, `"${m}" is not on the customer's page exactly once`);
  const indices = [...new Set(messagesOf(customer.frames).map((m) => m.index))].sort((a, b) => a - b);
  check(indices.every((v, i) => v === i + 1), `the customer's message indices have gaps: ${indices}`);
  await assertNeverShown(customer, ["Agents-only note", TESTNAME], "over long-polling");
  noPageErrors(customer, agent);
  await customer.context.close();
  await agent.context.close();
}

/* ---------- main ---------- */

/**
 * Auto-accept off: the chat reaches TestName as an invitation (Accept and
 * Reject, no composer); TestName rejects it, Agent2 is offered it and
 * accepts under another name. The customer never learns of TestName.
 */
async function invitationScenario(browser, base) {
  const customer = await openPage(browser, `${base}/widget`, { viewport: { width: 420, height: 760 } });
  const first = await openPage(browser, `${base}/`);
  const second = await openPage(browser, `${base}/`);
  await signInAsDemo(first.page, TESTNAME);
  await signInWithToken(second.page, await devToken(base, "agent", AGENT2));

  await customer.page.fill("#nickname", "Vitaliy");
  await customer.page.fill("#first-message", "Hello, is anyone there?");
  await customer.page.locator("#first-message").focus();
  await customer.page.keyboard.press("Tab");
  await customer.page.keyboard.press("Enter");
  await waitLine(customer.page, "is anyone there?");

  // TestName is offered the chat: Accept and Reject, nothing else.
  await waitLine(first.page, "is anyone there?");
  await waitText(first.page, "#conv-state", "Invited");
  await first.page.locator("#invite-ops").waitFor({ state: "visible" });
  check(await first.page.isVisible("#invite-ops [data-op=Reject]"), "no Reject for an invitation");
  check(await first.page.isDisabled("#composer-text"), "the composer is usable before Accept");
  check(await first.page.isHidden("#end-ops"), "Leave or Complete offered before Accept");
  await first.page.click("#invite-ops [data-op=Reject]");
  await waitText(first.page, "#op-result", "Reject: done");
  await waitText(first.page, "#session-list", "you left");
  check(await first.page.isHidden("#invite-ops"), "Accept still offered after Reject");

  // Back to routing: Agent2 is offered it, and accepts as "Ann".
  await waitLine(second.page, "is anyone there?");
  await waitText(second.page, "#conv-state", "Invited");
  await second.page.locator("#invite-ops").waitFor({ state: "visible" });
  await second.page.fill("#accept-nickname", "Ann");
  await second.page.click("#invite-ops [data-op=Accept]");
  await waitText(second.page, "#op-result", "Accept: done");
  await waitText(second.page, "#conv-state", "Chatting");
  check(await second.page.isHidden("#invite-ops"), "Accept still offered after Accept");
  await second.page.waitForFunction(() => !document.querySelector("#composer-text").disabled);
  await waitText(customer.page, "#widget-sub", "Ann");
  await say(second.page, "Hi Vitaliy, Ann here.");
  await waitLine(customer.page, "Ann here");
  await assertNeverShown(customer, ["TestName", TESTNAME, "Agent2", AGENT2], "(invited agents)");
  noPageErrors(customer, first, second);
  for (const p of [customer, first, second]) await p.context.close();
}

const SCENARIOS = {
  seed: seedScenario,
  consult: consultScenario,
  reconnect: reconnectScenario,
  invitation: invitationScenario,
  longpoll: longPollScenario,
};
/** What runs without a scenario named: those of a default server. */
const DEFAULT_SCENARIOS = ["seed", "consult", "reconnect", "longpoll"];

async function main() {
  const base = (process.argv[2] || "").replace(/\/$/, "");
  if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(base)) {
    console.error("usage: node e2e.mjs http://127.0.0.1:<port> [scenario ...]");
    process.exit(2);
  }
  const names = process.argv.slice(3).length ? process.argv.slice(3) : DEFAULT_SCENARIOS;
  for (const n of names) check(SCENARIOS[n], `no scenario named ${n}`);
  const browser = await launch();
  let passed = 0;
  let failed = 0;
  try {
    for (const name of names) {
      try {
        await SCENARIOS[name](browser, base);
        console.log(`ok - ${name}`);
        passed += 1;
      } catch (e) {
        console.log(`FAILED - ${name}: ${e.stack || e}`);
        failed += 1;
      }
    }
  } finally {
    await browser.close();
  }
  console.log(`browser: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(`e2e: ${e.message}`);
  process.exit(2);
});
