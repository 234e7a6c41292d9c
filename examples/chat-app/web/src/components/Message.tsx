import type { Message as MessageRow, ToolCall } from "../types";
import { SpeakerIcon } from "./Icons";
import { Markdown } from "./Markdown";

// A tool call as a collapsible block: its input, and its result when the result is on the page.
function ToolBlock({ call, result }: { call: ToolCall; result: string | undefined }) {
  if (!call.function) {
    return (
      <details className="tool">
        <summary>{`tool call: ${call.tool}`}</summary>
        <pre className="input">{JSON.stringify(call.input)}</pre>
        <pre className="output">{String(call.output ?? "")}</pre>
      </details>
    );
  }
  return (
    <details className="tool" data-call-id={call.id}>
      <summary>{`tool call: ${call.function.name}`}</summary>
      <div className="label">input</div>
      <pre className="input">{call.function.arguments || "{}"}</pre>
      <div className="label">output</div>
      <pre className="output">{result ?? "(no result yet)"}</pre>
    </details>
  );
}

interface Props {
  message: MessageRow;
  // the results of this page's tool messages, by the id of the call they answer
  results: Map<string, string>;
  highlighted?: boolean;
  // read a reply aloud
  onSpeak?: (text: string) => void;
}

export function Message({ message: m, results, highlighted, onSpeak }: Props) {
  if (m.role === "tool") {
    // shown inside its call's block; this is a result whose call is on an earlier page
    return (
      <details className="tool" data-seq={m.seq}>
        <summary>{`tool result (${m.tool_call_id})`}</summary>
        <pre className="output">{m.content}</pre>
      </details>
    );
  }
  const stamp = m.created_at ? new Date(m.created_at).toLocaleTimeString() : "";
  return (
    <div className={`msg ${m.role}${highlighted ? " highlight" : ""}`} data-seq={m.seq}>
      {m.content ? (m.role === "assistant" ? <Markdown text={m.content} /> : <div className="content">{m.content}</div>) : null}
      {(m.tool_calls || []).map((call, i) => (
        <ToolBlock key={call.id ?? i} call={call} result={call.id ? results.get(call.id) : undefined} />
      ))}
      <span className="stamp">
        {`#${m.seq} · ${stamp}`}
        {onSpeak && m.role === "assistant" && m.content ? (
          <button type="button" className="speak" aria-label="read aloud" onClick={() => onSpeak(m.content)}><SpeakerIcon /></button>
        ) : null}
      </span>
    </div>
  );
}
