// Search snippets mark the matched words with ** (plain text from the database). They are split
// into parts so that the page shows the marks as highlights, each part still as text.

export interface SnippetPart {
  text: string;
  match: boolean;
}

export function snippetParts(snippet: string): SnippetPart[] {
  const parts: SnippetPart[] = [];
  snippet.split("**").forEach((text, i) => {
    if (text) parts.push({ text, match: i % 2 === 1 });
  });
  return parts;
}
