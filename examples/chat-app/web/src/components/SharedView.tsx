import { useEffect, useState } from "react";
import { plainError } from "../api";
import type { SharedConversation } from "../types";
import { MessageList } from "./MessageList";

// What a share link opens, without signing in: the conversation as it was shared, read-only.
export function SharedView({ token }: { token: string }) {
  const [data, setData] = useState<SharedConversation | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    fetch("/shared", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }) })
      .then(async (res) => {
        if (!live) return;
        if (res.status === 404) setError("This link does not work: it may have been revoked, or it expired.");
        else if (!res.ok) setError(plainError(res.status));
        else setData(await res.json());
      })
      .catch(() => live && setError(plainError(0)));
    return () => { live = false; };
  }, [token]);

  return (
    <div id="shared" className="shared">
      <header className="header">
        <h2 id="title">{data ? data.title || "Shared conversation" : "Shared conversation"}</h2>
        <span className="badge">read-only</span>
      </header>
      {error ? <div id="error" className="error" role="alert">{error}</div> : null}
      {data ? <MessageList messages={data.messages} hasEarlier={false} onEarlier={() => undefined} /> : null}
    </div>
  );
}
