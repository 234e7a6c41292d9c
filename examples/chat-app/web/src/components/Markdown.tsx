import { useState, type ReactNode } from "react";
import { parseMarkdown, type Block, type Inline } from "../markdown";

function inline(nodes: Inline[]): ReactNode[] {
  return nodes.map((n, i) => {
    switch (n.kind) {
      case "text": return n.text;
      case "code": return <code key={i}>{n.text}</code>;
      case "strong": return <strong key={i}>{inline(n.children)}</strong>;
      case "em": return <em key={i}>{inline(n.children)}</em>;
      case "link": return <a key={i} href={n.href} target="_blank" rel="noopener noreferrer">{inline(n.children)}</a>;
    }
  });
}

function CodeBlock({ lang, text }: { lang: string; text: string }) {
  const [copied, setCopied] = useState(false);
  async function copy() {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      setCopied(false);
    }
  }
  return (
    <div className="code-block">
      <div className="code-bar">
        <span>{lang}</span>
        <button type="button" className="copy" onClick={() => void copy()}>{copied ? "copied" : "copy"}</button>
      </div>
      <pre><code>{text}</code></pre>
    </div>
  );
}

function block(b: Block, i: number): ReactNode {
  switch (b.kind) {
    case "paragraph": return <p key={i}>{inline(b.children)}</p>;
    case "heading": {
      const Tag = (["h3", "h4", "h5", "h6", "h6", "h6"] as const)[b.level - 1];
      return <Tag key={i}>{inline(b.children)}</Tag>;
    }
    case "list": {
      const items = b.items.map((item, j) => <li key={j}>{inline(item)}</li>);
      return b.ordered ? <ol key={i}>{items}</ol> : <ul key={i}>{items}</ul>;
    }
    case "quote": return <blockquote key={i}>{inline(b.children)}</blockquote>;
    case "code": return <CodeBlock key={i} lang={b.lang} text={b.text} />;
  }
}

// A reply's Markdown as elements: everything in it is text to React, so nothing in a reply runs.
export function Markdown({ text }: { text: string }) {
  return <div className="content markdown">{parseMarkdown(text).map(block)}</div>;
}
