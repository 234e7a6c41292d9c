import { useEffect, useRef } from "react";
import type { Conversation } from "../types";

interface Props {
  conversations: Conversation[];
  currentId: string | null;
  hasMore: boolean;
  hidden?: boolean;
  onOpen: (id: string) => void;
  onMore: () => void;
}

// Newest first; the next page loads as the list scrolls to its end (or while it does not fill its box).
export function ConversationList({ conversations, currentId, hasMore, hidden, onOpen, onMore }: Props) {
  const list = useRef<HTMLUListElement>(null);

  useEffect(() => {
    const el = list.current;
    if (el && hasMore && !hidden && el.scrollHeight <= el.clientHeight) onMore();
  }, [conversations.length, hasMore, hidden, onMore]);

  function onScroll() {
    const el = list.current;
    if (el && hasMore && el.scrollTop + el.clientHeight >= el.scrollHeight - 40) onMore();
  }

  return (
    <ul id="conversations" className="conversations" aria-label="Conversations" ref={list} onScroll={onScroll} hidden={hidden}>
      {conversations.map((c) => (
        <li key={c.id} data-id={c.id} className={c.id === currentId ? "active" : undefined}>
          <button type="button" className="item" aria-current={c.id === currentId ? "page" : undefined} onClick={() => onOpen(c.id)}>
            <span className="name">{c.title || "New conversation"}</span>
            <span className="meta">{`${c.message_count} messages · ${new Date(c.updated_at).toLocaleString()}`}</span>
          </button>
        </li>
      ))}
    </ul>
  );
}
