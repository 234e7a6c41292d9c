import { useState, type FormEvent } from "react";
import { snippetParts } from "../snippet";
import type { SearchHit, SearchPage } from "../types";

interface Props {
  search: (query: string, cursor: string | null) => Promise<SearchPage>;
  onOpen: (hit: SearchHit) => void;
  // results are showing (the conversation list gives them its place)
  onActive: (active: boolean) => void;
}

function Snippet({ text }: { text: string }) {
  return (
    <span className="snippet">
      {snippetParts(text).map((p, i) => (p.match ? <mark key={i}>{p.text}</mark> : <span key={i}>{p.text}</span>))}
    </span>
  );
}

export function SearchPanel({ search, onOpen, onActive }: Props) {
  const [query, setQuery] = useState("");
  const [hits, setHits] = useState<SearchHit[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);

  function clear() {
    setHits(null);
    setCursor(null);
    onActive(false);
  }

  async function run(e: FormEvent) {
    e.preventDefault();
    const q = query.trim();
    if (!q) return clear();
    const page = await search(q, null);
    setHits(page.results);
    setCursor(page.next_cursor);
    onActive(true);
  }

  async function more() {
    const page = await search(query.trim(), cursor);
    setHits((h) => [...(h || []), ...page.results]);
    setCursor(page.next_cursor);
  }

  return (
    <>
      <form id="search-form" className="search" role="search" onSubmit={(e) => void run(e).catch(() => undefined)}>
        <input id="search-input" type="search" placeholder="Search messages" maxLength={1000} aria-label="Search messages"
               value={query} onChange={(e) => { setQuery(e.target.value); if (!e.target.value) clear(); }} />
      </form>
      <div id="search-results" className="search-results" hidden={hits === null}>
        {hits && !hits.length ? <div className="hit">No messages match.</div> : null}
        {(hits || []).map((h) => (
          <button type="button" className="hit" key={`${h.conversation_id}:${h.seq}`} onClick={() => onOpen(h)}>
            <span className="meta">{`${h.title || "New conversation"} · #${h.seq} ${h.role}`}</span>
            <Snippet text={h.snippet} />
          </button>
        ))}
        {cursor ? <button type="button" id="more-results" className="link" onClick={() => void more()}>more results</button> : null}
      </div>
    </>
  );
}
