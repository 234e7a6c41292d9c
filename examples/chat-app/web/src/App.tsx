// The page: sign-in, the sidebar (conversations, search, who is signed in) and the open
// conversation (messages, token meter, composer). State lives here; the components only show it.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { ApiError, createApi, plainError } from "./api";
import { Composer } from "./components/Composer";
import { ConversationList } from "./components/ConversationList";
import { MessageList } from "./components/MessageList";
import { SearchPanel } from "./components/SearchPanel";
import { ShareDialog } from "./components/ShareDialog";
import { SharedView } from "./components/SharedView";
import { TokenMeter } from "./components/TokenMeter";
import { UsageDashboard } from "./components/UsageDashboard";
import { conversationFromHash, hashFor, sharedTokenFromHash, tokenFromHash } from "./route";
import type { Context, Conversation, ConversationPage, Me, Message, MessagePage, SearchHit, SearchPage, ShareOffer, SummaryInfo, Turn, Usage } from "./types";

const NO_TITLE = "Select or start a conversation";
const NEW_KEY = "new"; // the pending turn of a conversation that does not exist yet
const USAGE_HASH = "#/usage";
const USAGE_DAYS = 30;

function initialToken(): string | null {
  const fromLink = tokenFromHash(location.hash);
  if (fromLink) {
    sessionStorage.setItem("token", fromLink);
    history.replaceState(null, "", location.pathname); // the token leaves the address bar
  }
  return sessionStorage.getItem("token");
}

interface Failure {
  message: string;
  retry?: () => void;
}

export function App() {
  const [token, setToken] = useState<string | null>(initialToken);
  const [signinError, setSigninError] = useState<string | null>(null);
  const [standIn, setStandIn] = useState(false);
  const [voice, setVoice] = useState<{ input: boolean; output: "provider" | "browser" }>({ input: false, output: "browser" });
  const [speech, setSpeech] = useState<string | null>(null); // the object URL of the reply being read aloud
  const [me, setMe] = useState<Me | null>(null);
  const [drawer, setDrawer] = useState(false);

  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [searching, setSearching] = useState(false);

  const [currentId, setCurrentId] = useState<string | null>(null);
  const [conversation, setConversation] = useState<Conversation | null>(null);
  const [messages, setMessages] = useState<Message[]>([]);
  const [before, setBefore] = useState<number | null>(null);
  const [context, setContext] = useState<Context | null>(null);
  const [focusSeq, setFocusSeq] = useState<number | null>(null);
  // the turns under way, by conversation: the user's message (null: an answer regenerated)
  const [pending, setPending] = useState<Record<string, string | null>>({});
  const [summary, setSummary] = useState<SummaryInfo["summary"]>(null);
  const [renaming, setRenaming] = useState(false);
  const [view, setView] = useState<"chat" | "usage">("chat");
  const [usage, setUsage] = useState<Usage | null>(null);
  const [sharing, setSharing] = useState(false);
  const [offers, setOffers] = useState<ShareOffer[]>([]);
  // a share link opens without signing in
  const [sharedToken, setSharedToken] = useState(() => sharedTokenFromHash(location.hash));
  const [failure, setFailure] = useState<Failure | null>(null);
  const [summaryState, setSummaryState] = useState<string | null>(null);

  // what async work checks before it touches the view: the user may have moved on meanwhile
  const current = useRef<string | null>(null);
  const focusNext = useRef<number | null>(null);
  const loadingList = useRef(false);
  // the conversations with a turn under way, read synchronously: two Enters in one tick send once
  const inFlight = useRef(new Set<string>());

  const signOut = useCallback((message: string | null) => {
    sessionStorage.removeItem("token");
    setToken(null);
    setMe(null);
    setSigninError(message);
  }, []);
  const api = useMemo(() => createApi(token ?? "", () => signOut(plainError(401))), [token, signOut]);

  const showError = useCallback((err: unknown, retry?: () => void) => {
    const message = err instanceof ApiError ? err.message + (err.hint ? ` (${err.hint})` : "") : plainError(500);
    setFailure({ message, retry });
  }, []);

  // ---- the conversation list ----
  const loadConversations = useCallback(async (reset: boolean, after: string | null = null) => {
    if (loadingList.current && !reset) return null;
    loadingList.current = true;
    try {
      const page = await api<ConversationPage>("GET", `/conversations${after ? `?cursor=${encodeURIComponent(after)}` : ""}`);
      setConversations((list) => {
        const head = reset ? [] : list;
        const seen = new Set(head.map((c) => c.id));
        return [...head, ...page.conversations.filter((c) => !seen.has(c.id))];
      });
      setCursor(page.next_cursor);
      return page.conversations;
    } catch (err) {
      showError(err);
      return null;
    } finally {
      loadingList.current = false;
    }
  }, [api, showError]);
  const loadMore = useCallback(() => { if (cursor) void loadConversations(false, cursor); }, [cursor, loadConversations]);

  // ---- the open conversation (its address is the source of truth) ----
  const open = useCallback(async (id: string | null) => {
    current.current = id;
    setView("chat");
    const focus = focusNext.current;
    focusNext.current = null;
    setCurrentId(id);
    setFailure(null);
    setSummaryState(null);
    setSummary(null);
    setRenaming(false);
    setSharing(false);
    setDrawer(false);
    setFocusSeq(null);
    if (!id) {
      setConversation(null);
      setMessages([]);
      setBefore(null);
      setContext(null);
      return;
    }
    try {
      // a search hit opens the page that holds its message
      const page = await api<MessagePage>("GET", `/conversations/${id}/messages${focus ? `?before=${focus + 15}` : ""}`);
      if (current.current !== id) return;
      setConversation(page.conversation);
      setMessages(page.messages);
      setBefore(page.has_more ? page.next_before : null);
      setFocusSeq(focus);
      const [ctx, info] = await Promise.all([api<Context>("GET", `/conversations/${id}/context`),
                                             api<SummaryInfo>("GET", `/conversations/${id}/summary`)]);
      if (current.current !== id) return;
      setContext(ctx);
      setSummary(info.summary);
    } catch (err) {
      if (current.current === id) showError(err, () => void open(id));
    }
  }, [api, showError]);

  const navigate = useCallback((id: string | null) => {
    const hash = hashFor(id);
    if (location.hash === hash || (!id && !location.hash)) void open(id);
    else location.hash = hash; // the hashchange listener opens it
  }, [open]);

  const showUsage = useCallback(async () => {
    current.current = null;
    setCurrentId(null);
    setView("usage");
    setDrawer(false);
    setUsage(null);
    setFailure(null);
    try {
      setUsage(await api<Usage>("GET", `/usage?days=${USAGE_DAYS}`));
    } catch (err) {
      showError(err, () => void showUsage());
    }
  }, [api, showError]);

  // the address decides what the main area shows: the usage dashboard, or a conversation
  const route = useCallback(() => {
    if (location.hash === USAGE_HASH) void showUsage();
    else void open(conversationFromHash(location.hash));
  }, [open, showUsage]);

  useEffect(() => {
    const onHash = route;
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, [route]);

  useEffect(() => {
    const onHash = () => setSharedToken(sharedTokenFromHash(location.hash));
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  // ---- offers: conversations other users shared with this one, waiting for consent ----
  const loadOffers = useCallback(async () => {
    try {
      setOffers((await api<{ offers: ShareOffer[] }>("GET", "/shares")).offers);
    } catch (err) {
      showError(err);
    }
  }, [api, showError]);

  async function answerOffer(from: string, answer: "accept" | "decline") {
    try {
      await api("POST", `/shares/${from}/${answer}`);
      await Promise.all([loadOffers(), loadConversations(true)]);
    } catch (err) {
      showError(err);
    }
  }

  // ---- sign-in ----
  useEffect(() => {
    fetch("/config").then((r) => r.json()).then((c) => {
      setStandIn(!!c.stand_in_llm);
      setVoice({ input: !!c.voice_input, output: c.voice_output === "provider" ? "provider" : "browser" });
    }).catch(() => undefined);
  }, []);

  useEffect(() => {
    if (!token) return;
    let live = true;
    api<Me>("GET", "/me").then((who) => {
      if (!live) return;
      setMe(who);
      void loadConversations(true);
      void loadOffers();
      route();
    }).catch(() => undefined); // a refused token signs out with its message (api's onUnauthorized)
    return () => { live = false; };
  }, [token, api, loadConversations, loadOffers, route]);

  // ---- actions ----
  // One turn at a time per conversation; its answer updates the view only if that conversation
  // is still the one open.
  async function turn(text: string | null, request: (cid: string | null) => Promise<Turn>, keepThrough: (m: Message[]) => number,
                      retry: () => void): Promise<boolean> {
    const cid = current.current;
    const key = cid ?? NEW_KEY;
    if (inFlight.current.has(key)) return false;
    inFlight.current.add(key);
    setPending((p) => ({ ...p, [key]: text }));
    setFailure(null);
    try {
      const done = await request(cid);
      const list = await loadConversations(true);
      if (current.current !== cid) return true; // the answer belongs to its conversation: the view stays
      if (cid === null) {
        navigate(done.conversation_id); // the turn started a conversation: open it
      } else {
        setMessages((m) => {
          const keep = keepThrough(m);
          return [...m.filter((x) => x.seq <= keep), ...done.messages];
        });
        setContext(done.context);
        const updated = list?.find((c) => c.id === cid);
        if (updated) setConversation(updated); // the first message names the conversation
      }
      return true;
    } catch (err) {
      if (current.current === cid) showError(err, retry);
      return false;
    } finally {
      inFlight.current.delete(key);
      setPending((p) => {
        const rest = { ...p };
        delete rest[key];
        return rest;
      });
    }
  }

  function send(text: string): Promise<boolean> {
    return turn(text, (cid) => api<Turn>("POST", "/agent/chat", { message: text, conversation_id: cid }),
                (m) => (m.length ? m[m.length - 1].seq : 0), () => void send(text));
  }

  function regenerate() {
    const id = current.current;
    if (!id) return;
    // the answer after the last user message is replaced
    const lastUser = (m: Message[]) => Math.max(0, ...m.filter((x) => x.role === "user").map((x) => x.seq));
    void turn(null, () => api<Turn>("POST", `/conversations/${id}/regenerate`), lastUser, regenerate);
  }

  async function rename(title: string) {
    const id = current.current;
    setRenaming(false);
    if (!id || !title.trim() || title.trim() === conversation?.title) return;
    try {
      const updated = await api<Conversation>("PATCH", `/conversations/${id}`, { title: title.trim() });
      if (current.current === id) setConversation(updated);
      await loadConversations(true);
    } catch (err) {
      showError(err);
    }
  }

  // ---- voice ----
  async function transcribe(audio: Blob): Promise<string | null> {
    try {
      return (await api<{ text: string }>("POST", "/voice/transcribe", audio)).text;
    } catch (err) {
      showError(err);
      return null;
    }
  }

  async function speak(text: string) {
    if (voice.output === "browser") {
      if ("speechSynthesis" in window) window.speechSynthesis.speak(new SpeechSynthesisUtterance(text));
      return;
    }
    try {
      const audio = await api<Blob>("POST", "/voice/speech", { text: text.slice(0, 4000) });
      setSpeech((old) => {
        if (old) URL.revokeObjectURL(old);
        return URL.createObjectURL(audio);
      });
    } catch (err) {
      showError(err);
    }
  }

  async function newConversation() {
    // an empty conversation already there is the new one: clicks do not pile up empty conversations
    const empty = conversations.find((c) => c.message_count === 0 && c.access === "owner");
    try {
      const id = empty ? empty.id : (await api<Conversation>("POST", "/conversations", {})).id;
      if (!empty) await loadConversations(true);
      navigate(id);
      document.getElementById("composer-input")?.focus();
    } catch (err) {
      showError(err);
    }
  }

  async function remove() {
    const id = current.current;
    if (!id || !confirm("Delete this conversation and all its messages?")) return;
    try {
      await api("DELETE", `/conversations/${id}`);
      navigate(null);
      await loadConversations(true);
    } catch (err) {
      showError(err);
    }
  }

  const JOB_STATE = { queued: "Summary queued…", running: "Writing the summary…" } as const;

  async function summarize() {
    const id = current.current;
    if (!id) return;
    try {
      await api("POST", `/conversations/${id}/summarize`);
      setSummaryState(JOB_STATE.queued);
      // the worker writes the summary within seconds: follow its job, then the window
      for (let i = 0; i < 20 && current.current === id; i++) {
        await new Promise((r) => setTimeout(r, 1000));
        const [info, ctx] = await Promise.all([api<SummaryInfo>("GET", `/conversations/${id}/summary`),
                                               api<Context>("GET", `/conversations/${id}/context`)]);
        if (current.current !== id) return;
        setContext(ctx);
        setSummary(info.summary);
        const job = info.job;
        if (job?.status === "failed") {
          setSummaryState(`The summary could not be written (${job.attempts} attempts). Try again later.`);
          return;
        }
        if (job?.status === "done" || ctx.summary_included) {
          setSummaryState(ctx.summary_included ? "The summary is in the window." : "The summary is written.");
          return;
        }
        if (job) setSummaryState(JOB_STATE[job.status]);
      }
      if (current.current === id) setSummaryState("The summary is not ready yet; the meter shows it when it is.");
    } catch (err) {
      setSummaryState(null);
      showError(err);
    }
  }

  const EXPORTS = {
    markdown: { extension: "md", type: "text/markdown" },
    json: { extension: "json", type: "application/json" },
    pdf: { extension: "pdf", type: "application/pdf" },
  } as const;

  async function exportAs(format: keyof typeof EXPORTS) {
    const id = current.current;
    if (!id) return;
    try {
      const data = await api<unknown>("GET", `/conversations/${id}/export?format=${format}`);
      const { extension, type } = EXPORTS[format];
      const blob = data instanceof Blob ? data : new Blob([format === "json" ? JSON.stringify(data, null, 2) : String(data)], { type });
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `conversation-${id}.${extension}`;
      link.click();
      URL.revokeObjectURL(link.href);
    } catch (err) {
      showError(err);
    }
  }

  async function earlier() {
    const id = current.current;
    if (!id || !before) return;
    try {
      const page = await api<MessagePage>("GET", `/conversations/${id}/messages?before=${before}`);
      if (current.current !== id) return;
      setMessages((m) => [...page.messages, ...m]);
      setBefore(page.has_more ? page.next_before : null);
    } catch (err) {
      showError(err);
    }
  }

  const search = useCallback(async (q: string, after: string | null) => {
    try {
      return await api<SearchPage>("GET", `/search?q=${encodeURIComponent(q)}${after ? `&cursor=${encodeURIComponent(after)}` : ""}`);
    } catch (err) {
      showError(err);
      throw err;
    }
  }, [api, showError]);

  function openHit(hit: SearchHit) {
    focusNext.current = hit.seq;
    if (current.current === hit.conversation_id) void open(hit.conversation_id);
    else navigate(hit.conversation_id);
  }

  function askSignOut() {
    if (confirm("Sign out? You will need your sign-in link or token to come back.")) signOut(null);
  }

  // ---- the page ----
  const banner = standIn ? (
    <div id="banner" className="banner">
      Offline demo: replies come from a stand-in LLM (the test suite's fake OpenAI-compatible server), not a real model.
    </div>
  ) : null;

  if (sharedToken) {
    return (
      <>
        {banner}
        <SharedView token={sharedToken} />
      </>
    );
  }

  if (!token || !me) {
    return (
      <>
        {banner}
        <section id="signin" className="signin" hidden={!!token && !signinError}>
          <h1>memory_ext chat</h1>
          <p>Paste a bearer token (<code>python -m chat_app token alice</code> prints one), or open the link <code>run.sh</code> printed.</p>
          {signinError ? <div id="signin-error" className="error" role="alert">{signinError}</div> : null}
          <form id="signin-form" onSubmit={(e) => {
            e.preventDefault();
            const value = (new FormData(e.currentTarget).get("token") as string).trim();
            if (!value) return;
            sessionStorage.setItem("token", value);
            setSigninError(null);
            setToken(value);
          }}>
            <input id="token-input" name="token" placeholder="eyJhbGciOi…" autoComplete="off" aria-label="Bearer token" />
            <button className="primary">Sign in</button>
          </form>
        </section>
      </>
    );
  }

  const busy = pending[currentId ?? NEW_KEY] !== undefined;
  // what the caller may do with the open conversation (a new one is the caller's own)
  const access = currentId ? conversation?.access ?? "owner" : "owner";
  const owner = access === "owner";
  const writable = access !== "viewer";
  return (
    <>
      {banner}
      <div id="app" className={drawer ? "app drawer-open" : "app"}>
        <aside className="sidebar" aria-label="Conversations and search">
          <button id="new-conversation" type="button" className="primary" onClick={() => void newConversation()}>+ New Conversation</button>
          <SearchPanel search={search} onOpen={openHit} onActive={setSearching} />
          {offers.length ? (
            <div id="offers" className="offers" role="status">
              {offers.map((o) => (
                <div key={o.from_user_id} className="offer" data-from={o.from_user_id}>
                  {`user ${o.from_user_id.slice(0, 8)}… shared ${o.offers} conversation${o.offers === 1 ? "" : "s"} with you `}
                  <button type="button" className="link accept" onClick={() => void answerOffer(o.from_user_id, "accept")}>accept</button>
                  <button type="button" className="link decline" onClick={() => void answerOffer(o.from_user_id, "decline")}>decline</button>
                </div>
              ))}
            </div>
          ) : null}
          <ConversationList conversations={conversations} currentId={currentId} hasMore={!!cursor} hidden={searching}
                            onOpen={navigate} onMore={loadMore} />
          <div className="who">
            <span id="who">{me.name || `user ${me.user_id.slice(0, 8)}…`}</span>{" "}
            <a id="usage-open" className="link usage-link" href={USAGE_HASH}
               aria-current={view === "usage" ? "page" : undefined}>usage</a>{" "}
            <button id="signout" type="button" className="link" onClick={askSignOut}>sign out</button>
          </div>
        </aside>
        <div className="scrim" onClick={() => setDrawer(false)} hidden={!drawer} />
        {view === "usage" ? (
          <main className="main">
            <header className="header">
              <button type="button" className="menu" aria-label="Conversations" aria-expanded={drawer}
                      onClick={() => setDrawer(!drawer)}>☰</button>
              <h2 id="title">Usage</h2>
            </header>
            {failure ? <div id="error" className="error" role="alert"><span>{failure.message}</span></div> : null}
            <UsageDashboard usage={usage} days={USAGE_DAYS} />
          </main>
        ) : (
        <main className="main">
          <header className="header">
            <button id="menu" type="button" className="menu" aria-label="Conversations" aria-expanded={drawer}
                    onClick={() => setDrawer(!drawer)}>☰</button>
            {renaming ? (
              <form id="rename-form" className="rename" onSubmit={(e) => {
                e.preventDefault();
                void rename(String(new FormData(e.currentTarget).get("title") ?? ""));
              }}>
                <input id="title-input" name="title" maxLength={200} aria-label="Conversation title" autoFocus
                       defaultValue={conversation?.title ?? ""} onKeyDown={(e) => { if (e.key === "Escape") setRenaming(false); }} />
              </form>
            ) : (
              <h2 id="title">{currentId ? conversation?.title || "New conversation" : NO_TITLE}</h2>
            )}
            <TokenMeter context={currentId ? context : null} />
            <div className="actions" id="actions" hidden={!currentId}>
              {owner ? <button id="rename" type="button" className="link" onClick={() => setRenaming(true)}>rename</button> : null}
              {writable ? (
                <button id="regenerate" type="button" className="link" onClick={regenerate}
                        disabled={busy || !messages.some((m) => m.role === "user")}>regenerate</button>
              ) : null}
              {owner ? <button id="share" type="button" className="link" onClick={() => setSharing(true)}>share</button> : null}
              {writable ? <button id="summarize" type="button" className="link" onClick={() => void summarize()}>summarize</button> : null}
              <a id="export" className="link" href="#" onClick={(e) => { e.preventDefault(); void exportAs("markdown"); }}>export</a>
              <a id="export-json" className="link" href="#" onClick={(e) => { e.preventDefault(); void exportAs("json"); }}>json</a>
              <a id="export-pdf" className="link" href="#" onClick={(e) => { e.preventDefault(); void exportAs("pdf"); }}>pdf</a>
              {owner ? <button id="delete" type="button" className="link danger" onClick={() => void remove()}>delete</button> : null}
            </div>
            {summaryState ? <div id="summary-state" className="summary-state" role="status">{summaryState}</div> : null}
          </header>
          {summary && currentId ? (
            <details id="summary-text" className="summary-text">
              <summary>{`Summary of messages 1–${summary.covers_through_seq}`}</summary>
              <p>{summary.content}</p>
            </details>
          ) : null}
          <MessageList messages={messages} waiting={busy} pendingText={pending[currentId ?? NEW_KEY] ?? null} focusSeq={focusSeq}
                       hasEarlier={!!before} onEarlier={() => void earlier()} onSpeak={(t) => void speak(t)} />
          {speech ? <audio id="speech-audio" src={speech} autoPlay /> : null}
          {focusSeq != null && currentId ? (
            <button id="show-latest" type="button" className="link latest" onClick={() => void open(currentId)}>
              show the latest messages
            </button>
          ) : null}
          {failure ? (
            <div id="error" className="error" role="alert">
              <span>{failure.message}</span>
              {failure.retry ? <button id="retry" type="button" className="link" onClick={failure.retry}>Retry</button> : null}
            </div>
          ) : null}
          {writable ? (
            <Composer key={currentId ?? NEW_KEY} busy={busy} onSend={send} onTranscribe={voice.input ? transcribe : undefined} />
          ) : (
            <div id="read-only" className="readonly">Shared with you to read: only its owner and editors write here.</div>
          )}
          {sharing && currentId ? (
            <ShareDialog api={api} conversationId={currentId} meId={me.user_id} onError={showError} onClose={() => setSharing(false)} />
          ) : null}
        </main>
        )}
      </div>
    </>
  );
}
