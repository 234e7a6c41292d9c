// The chat page: no framework, no build step. Every piece of content is put on the page with
// textContent (never innerHTML), so a hostile message is shown as the text it is.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: null, current: null, cursor: null, loadingList: false, before: null, calls: new Map() };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

// ---- the API ----

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${state.token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (res.status === 401) { signOut(); throw new Error("Please sign in again."); }
  if (res.status === 204) return null;
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : await res.text();
  if (!res.ok) {
    const err = new Error((data && data.error) || `HTTP ${res.status}`);
    err.status = res.status;
    err.hint = data && data.hint;
    throw err;
  }
  return data;
}

function showError(err) {
  const box = $("error");
  box.textContent = err ? err.message + (err.hint ? ` (${err.hint})` : "") : "";
  box.hidden = !err;
}

// ---- sign-in ----

function signOut() {
  sessionStorage.removeItem("token");
  state.token = null;
  $("app").hidden = true;
  $("signin").hidden = false;
}

async function start() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    sessionStorage.setItem("token", fromLink);
    history.replaceState(null, "", location.pathname);  // the token leaves the address bar
  }
  state.token = sessionStorage.getItem("token");
  const config = await (await fetch("/config")).json();
  if (config.stand_in_llm) {
    $("banner").textContent = "Offline demo: replies come from a stand-in LLM (the test suite's fake " +
      "OpenAI-compatible server), not a real model.";
    $("banner").hidden = false;
  }
  if (!state.token) { signOut(); return; }
  try {
    const me = await api("GET", "/me");
    $("who").textContent = `user ${me.user_id.slice(0, 8)}…`;
  } catch (err) { return; }
  $("signin").hidden = true;
  $("app").hidden = false;
  await loadConversations(true);
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("token", $("token-input").value.trim());
  start();
});
$("signout").addEventListener("click", signOut);

// ---- the conversation list (newest first, more pages as it scrolls) ----

function conversationItem(c) {
  const li = el("li");
  li.dataset.id = c.id;
  li.append(el("span", "name", c.title || "New conversation"),
            el("span", "meta", `${c.message_count} messages · ${new Date(c.updated_at).toLocaleString()}`));
  if (c.id === state.current) li.classList.add("active");
  li.addEventListener("click", () => openConversation(c.id));
  return li;
}

async function loadConversations(reset) {
  if (state.loadingList || (!reset && !state.cursor)) return;
  state.loadingList = true;
  try {
    const q = reset ? "" : `?cursor=${encodeURIComponent(state.cursor)}`;
    const page = await api("GET", `/conversations${q}`);
    if (reset) $("conversations").replaceChildren();
    page.conversations.forEach((c) => $("conversations").append(conversationItem(c)));
    state.cursor = page.next_cursor;
  } catch (err) { showError(err); } finally { state.loadingList = false; }
  // keep loading while the list does not fill its box (so scrolling can ask for more)
  const list = $("conversations");
  if (state.cursor && list.scrollHeight <= list.clientHeight) loadConversations(false);
}

$("conversations").addEventListener("scroll", () => {
  const list = $("conversations");
  if (list.scrollTop + list.clientHeight >= list.scrollHeight - 40) loadConversations(false);
});

// ---- messages ----

function toolBlock(call) {
  const fn = call.function || {};
  const details = el("details", "tool");
  details.dataset.callId = call.id;
  details.append(el("summary", null, `tool call: ${fn.name}`), el("div", "label", "input"),
                 el("pre", "input", fn.arguments || "{}"), el("div", "label", "output"),
                 el("pre", "output", "(no result yet)"));
  state.calls.set(call.id, details);
  return details;
}

function messageNode(m) {
  if (m.role === "tool") {
    const block = state.calls.get(m.tool_call_id);
    if (block) { block.querySelector("pre.output").textContent = m.content; return null; }
    const orphan = el("details", "tool");  // its call is on an earlier page
    orphan.append(el("summary", null, `tool result (${m.tool_call_id})`), el("pre", "output", m.content));
    return orphan;
  }
  const node = el("div", `msg ${m.role}`);
  node.dataset.seq = m.seq;
  if (m.content) node.append(el("div", "content", m.content));
  (m.tool_calls || []).forEach((call) => {
    // the guide's combined records carry their input and output in the call itself
    if (call.function) node.append(toolBlock(call));
    else {
      const d = el("details", "tool");
      d.append(el("summary", null, `tool call: ${call.tool}`), el("pre", "input", JSON.stringify(call.input)),
               el("pre", "output", String(call.output ?? "")));
      node.append(d);
    }
  });
  node.append(el("span", "stamp", `#${m.seq} · ${m.created_at ? new Date(m.created_at).toLocaleTimeString() : ""}`));
  return node;
}

function renderMessages(messages, prepend) {
  const list = $("message-list");
  const nodes = messages.map(messageNode).filter(Boolean);
  if (prepend) list.prepend(...nodes); else list.append(...nodes);
}

function updateMeter(ctx) {
  const ratio = ctx.max_tokens ? ctx.token_count / ctx.max_tokens : 0;
  const fill = $("meter-fill");
  fill.style.width = `${Math.min(100, Math.round(ratio * 100))}%`;
  fill.className = "meter-fill" + (ratio >= 0.85 ? " full" : ratio >= 0.6 ? " warn" : "");
  $("meter-text").textContent = `${ctx.token_count} / ${ctx.max_tokens} tokens`;
  $("summary-badge").hidden = !ctx.summary_included;
  $("meter").hidden = false;
}

async function refreshMeter() {
  if (state.current) updateMeter(await api("GET", `/conversations/${state.current}/context`));
}

async function openConversation(id) {
  state.current = id;
  state.calls = new Map();
  showError(null);
  document.querySelectorAll("#conversations li").forEach((li) => li.classList.toggle("active", li.dataset.id === id));
  try {
    const page = await api("GET", `/conversations/${id}/messages`);
    $("title").textContent = page.conversation.title || "New conversation";
    $("message-list").replaceChildren();
    renderMessages(page.messages, false);
    state.before = page.has_more ? page.next_before : null;
    $("load-earlier").hidden = !state.before;
    $("actions").hidden = false;
    $("messages").scrollTop = $("messages").scrollHeight;
    await refreshMeter();
  } catch (err) { showError(err); }
}

$("load-earlier").addEventListener("click", async () => {
  try {
    const page = await api("GET", `/conversations/${state.current}/messages?before=${state.before}`);
    renderMessages(page.messages, true);  // oldest first, so that results find their calls
    state.before = page.has_more ? page.next_before : null;
    $("load-earlier").hidden = !state.before;
  } catch (err) { showError(err); }
});

// ---- composing ----

async function send() {
  const input = $("composer-input");
  const text = input.value.trim();
  if (!text) return;
  $("send").disabled = true;
  showError(null);
  const pending = el("div", "msg user", text);
  const thinking = el("div", "msg assistant thinking", "…");
  $("message-list").append(pending, thinking);
  $("messages").scrollTop = $("messages").scrollHeight;
  try {
    const turn = await api("POST", "/agent/chat", { message: text, conversation_id: state.current });
    input.value = "";
    pending.remove(); thinking.remove();
    if (turn.conversation_id !== state.current) {
      // the turn started a conversation: open it (its messages, meter and actions)
      await loadConversations(true);
      await openConversation(turn.conversation_id);
    } else {
      renderMessages(turn.messages, false);
      updateMeter(turn.context);
      $("messages").scrollTop = $("messages").scrollHeight;
      await loadConversations(true);
    }
    const item = document.querySelector(`#conversations li[data-id="${turn.conversation_id}"] .name`);
    if (item) $("title").textContent = item.textContent;  // the first message names the conversation
  } catch (err) {
    pending.remove(); thinking.remove();
    showError(err);
  } finally { $("send").disabled = false; input.focus(); }
}

$("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
$("composer-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
});

$("new-conversation").addEventListener("click", async () => {
  try {
    const c = await api("POST", "/conversations", {});
    await loadConversations(true);
    await openConversation(c.id);
    $("composer-input").focus();
  } catch (err) { showError(err); }
});

$("delete").addEventListener("click", async () => {
  if (!state.current || !confirm("Delete this conversation and all its messages?")) return;
  try {
    await api("DELETE", `/conversations/${state.current}`);
    state.current = null;
    $("message-list").replaceChildren();
    $("title").textContent = "Select or start a conversation";
    $("meter").hidden = true;
    $("actions").hidden = true;
    await loadConversations(true);
  } catch (err) { showError(err); }
});

$("summarize").addEventListener("click", async () => {
  try {
    await api("POST", `/conversations/${state.current}/summarize`);
    // the worker writes the summary within seconds: watch the meter until it is in the window
    for (let i = 0; i < 15 && $("summary-badge").hidden; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      await refreshMeter();
    }
  } catch (err) { showError(err); }
});

$("export").addEventListener("click", async (e) => {
  e.preventDefault();
  try {
    const text = await api("GET", `/conversations/${state.current}/export?format=markdown`);
    const link = el("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/markdown" }));
    link.download = `conversation-${state.current}.md`;
    link.click();
    URL.revokeObjectURL(link.href);
  } catch (err) { showError(err); }
});

// ---- search ----

$("search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const q = $("search-input").value.trim();
  const box = $("search-results");
  if (!q) { box.hidden = true; $("conversations").hidden = false; return; }
  try {
    const page = await api("GET", `/search?q=${encodeURIComponent(q)}`);
    box.replaceChildren();
    if (!page.results.length) box.append(el("div", "hit", "No messages match."));
    page.results.forEach((r) => {
      const hit = el("div", "hit");
      // snippets mark matches with ** (plain text): shown as text, never as HTML
      hit.append(el("span", "meta", `${r.title || "New conversation"} · #${r.seq} ${r.role}`), el("span", null, r.snippet));
      hit.addEventListener("click", () => openConversation(r.conversation_id));
      box.append(hit);
    });
    box.hidden = false;
    $("conversations").hidden = true;
  } catch (err) { showError(err); }
});
$("search-input").addEventListener("search", () => {
  if (!$("search-input").value) { $("search-results").hidden = true; $("conversations").hidden = false; }
});

start().catch(showError);
