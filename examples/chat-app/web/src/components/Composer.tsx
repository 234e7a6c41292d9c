import { useState, type FormEvent, type KeyboardEvent } from "react";

export const MAX_MESSAGE_CHARS = 8000;

interface Props {
  // a turn of this conversation is under way: one at a time, so the composer waits
  busy: boolean;
  // resolves true when the message was accepted (the text is then cleared)
  onSend: (text: string) => Promise<boolean>;
}

export function Composer({ busy, onSend }: Props) {
  const [text, setText] = useState("");
  const length = [...text.trim()].length;
  const over = length - MAX_MESSAGE_CHARS;

  async function submit(e?: FormEvent) {
    e?.preventDefault();
    const message = text.trim();
    if (busy || !message || over > 0) return;
    if (await onSend(message)) setText("");
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void submit();
    }
  }

  return (
    <form id="composer" className="composer" onSubmit={submit}>
      <div className="composer-field">
        <textarea id="composer-input" rows={2} value={text} aria-label="Message"
                  placeholder="Message (Enter to send, Shift+Enter for a new line)"
                  aria-describedby="too-long" onChange={(e) => setText(e.target.value)} onKeyDown={onKeyDown} />
        <div id="too-long" className="too-long" role="status" hidden={over <= 0}>
          {`This message is ${length.toLocaleString("en")} characters; the limit is ${MAX_MESSAGE_CHARS.toLocaleString("en")}. ` +
            `Shorten it by ${over.toLocaleString("en")} before sending.`}
        </div>
      </div>
      <button id="send" className="primary" disabled={busy || over > 0}>{busy ? "Sending…" : "Send"}</button>
    </form>
  );
}
