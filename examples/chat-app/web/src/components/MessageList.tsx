import { useEffect, useMemo, useRef } from "react";
import type { Message as MessageRow } from "../types";
import { Message } from "./Message";

interface Props {
  messages: MessageRow[];
  // a turn is waiting for its answer; pendingText: its user message (none when regenerating)
  waiting?: boolean;
  pendingText?: string | null;
  // a search hit's message: scrolled to and highlighted
  focusSeq?: number | null;
  hasEarlier: boolean;
  onEarlier: () => void;
  onSpeak?: (text: string) => void;
}

export function MessageList({ messages, waiting, pendingText, focusSeq, hasEarlier, onEarlier, onSpeak }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const { results, shown } = useMemo(() => {
    const calls = new Set<string>();
    messages.forEach((m) => (m.tool_calls || []).forEach((c) => c.id && calls.add(c.id)));
    const results = new Map<string, string>();
    const shown: MessageRow[] = [];
    for (const m of messages) {
      if (m.role === "tool" && m.tool_call_id && calls.has(m.tool_call_id)) results.set(m.tool_call_id, m.content);
      else shown.push(m);
    }
    return { results, shown };
  }, [messages]);

  const last = messages.length ? messages[messages.length - 1].seq : 0;
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const target = focusSeq != null ? el.querySelector(`[data-seq="${focusSeq}"]`) : null;
    if (target) target.scrollIntoView({ block: "center" });
    else el.scrollTop = el.scrollHeight;
  }, [last, waiting, focusSeq]);

  return (
    <div id="messages" className="messages" aria-live="polite" ref={box}>
      <button id="load-earlier" type="button" className="link" hidden={!hasEarlier} onClick={onEarlier}>
        load earlier messages
      </button>
      <div id="message-list">
        {shown.map((m) => (
          <Message key={m.id} message={m} results={results} highlighted={m.seq === focusSeq} onSpeak={onSpeak} />
        ))}
        {waiting && pendingText ? (
          <div className="msg user pending">
            <div className="content">{pendingText}</div>
          </div>
        ) : null}
        {waiting ? <div className="msg assistant thinking" aria-label="waiting for the answer">…</div> : null}
      </div>
    </div>
  );
}
