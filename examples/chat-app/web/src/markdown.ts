// A small Markdown reader for the model's replies: paragraphs, headings, lists, quotes, fenced
// code, and inline code, bold, italic and links. It builds a tree of plain strings that the page
// renders as React elements: raw HTML in a reply stays the text it is, and only http(s) and
// mailto links become links.

export type Inline =
  | { kind: "text"; text: string }
  | { kind: "code"; text: string }
  | { kind: "strong"; children: Inline[] }
  | { kind: "em"; children: Inline[] }
  | { kind: "link"; href: string; children: Inline[] };

export type Block =
  | { kind: "paragraph"; children: Inline[] }
  | { kind: "heading"; level: number; children: Inline[] }
  | { kind: "list"; ordered: boolean; items: Inline[][] }
  | { kind: "quote"; children: Inline[] }
  | { kind: "code"; lang: string; text: string };

const FENCE = /^\s*(```|~~~)\s*([\w+-]*)\s*$/;
const HEADING = /^(#{1,6})\s+(.*)$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*\d{1,9}[.)]\s+(.*)$/;
const QUOTE = /^\s*>\s?(.*)$/;

export function parseMarkdown(source: string): Block[] {
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  const blocks: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      const body: string[] = [];
      i++;
      while (i < lines.length && !(FENCE.exec(lines[i])?.[1] === fence[1])) body.push(lines[i++]);
      i++; // the closing fence (or the end of the reply)
      blocks.push({ kind: "code", lang: fence[2], text: body.join("\n") });
      continue;
    }
    if (!line.trim()) {
      i++;
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      blocks.push({ kind: "heading", level: heading[1].length, children: parseInline(heading[2]) });
      i++;
      continue;
    }
    const listPattern = BULLET.test(line) ? BULLET : NUMBERED.test(line) ? NUMBERED : null;
    if (listPattern) {
      const items: Inline[][] = [];
      for (let m; i < lines.length && (m = listPattern.exec(lines[i])); i++) items.push(parseInline(m[1]));
      blocks.push({ kind: "list", ordered: listPattern === NUMBERED, items });
      continue;
    }
    if (QUOTE.test(line)) {
      const body: string[] = [];
      for (let m; i < lines.length && (m = QUOTE.exec(lines[i])); i++) body.push(m[1]);
      blocks.push({ kind: "quote", children: parseInline(body.join("\n")) });
      continue;
    }
    const body: string[] = [];
    while (i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) && !HEADING.test(lines[i])
           && !BULLET.test(lines[i]) && !NUMBERED.test(lines[i]) && !QUOTE.test(lines[i])) {
      body.push(lines[i++]);
    }
    blocks.push({ kind: "paragraph", children: parseInline(body.join("\n")) });
  }
  return blocks;
}

// `code`, **strong**, __strong__, *em*, _em_, [text](url): the earliest match wins.
// Underscores only count at word edges (snake_case_names and __dunder__-like text stay text).
const INLINE = /`([^`\n]+)`|\*\*(.+?)\*\*|(?<!\w)__(\S(?:.*?\S)?)__(?!\w)|\*([^*\s](?:[^*]*[^*\s])?)\*|(?<!\w)_([^_\s](?:[^_]*[^_\s])?)_(?!\w)|\[([^\]\n]+)\]\(([^)\s]+)\)/s;

export function safeHref(url: string): string | null {
  return /^(https?:\/\/|mailto:)/i.test(url) ? url : null;
}

export function parseInline(text: string): Inline[] {
  const out: Inline[] = [];
  let rest = text;
  while (rest) {
    const m = INLINE.exec(rest);
    if (!m) {
      out.push({ kind: "text", text: rest });
      break;
    }
    if (m.index > 0) out.push({ kind: "text", text: rest.slice(0, m.index) });
    if (m[1] !== undefined) out.push({ kind: "code", text: m[1] });
    else if (m[2] !== undefined || m[3] !== undefined) out.push({ kind: "strong", children: parseInline(m[2] ?? m[3]) });
    else if (m[4] !== undefined || m[5] !== undefined) out.push({ kind: "em", children: parseInline(m[4] ?? m[5]) });
    else {
      const href = safeHref(m[7]);
      out.push(href ? { kind: "link", href, children: parseInline(m[6]) } : { kind: "text", text: m[0] });
    }
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
}
