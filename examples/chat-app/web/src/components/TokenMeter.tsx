import type { Context } from "../types";

// The window the next turn sends, against the agent's budget; and what the window leaves out.
export function meterLevel(ratio: number): "" | "warn" | "full" {
  return ratio >= 0.85 ? "full" : ratio >= 0.6 ? "warn" : "";
}

export function TokenMeter({ context }: { context: Context | null }) {
  if (!context) return <div className="meter" id="meter" hidden />;
  const ratio = context.max_tokens ? context.token_count / context.max_tokens : 0;
  const level = meterLevel(ratio);
  const omitted = context.omitted_messages;
  return (
    <div className="meter" id="meter" title="tokens of the next request to the model / the agent's budget">
      <div className="meter-bar">
        <div className={level ? `meter-fill ${level}` : "meter-fill"} id="meter-fill"
             style={{ width: `${Math.min(100, Math.round(ratio * 100))}%` }} />
      </div>
      <span id="meter-text">{`${context.token_count} / ${context.max_tokens} tokens`}</span>
      <span id="summary-badge" className="badge" hidden={!context.summary_included}>summary in context</span>
      <span id="omitted" className="omitted" hidden={!omitted}>
        {`${omitted} earlier message${omitted === 1 ? "" : "s"} not in context`}
      </span>
    </div>
  );
}
