import { describe, expect, it } from "vitest";
import { parseInline, parseMarkdown, safeHref } from "./markdown";

describe("parseMarkdown", () => {
  it("reads paragraphs, headings, lists, quotes and fenced code", () => {
    const blocks = parseMarkdown("# Title\nfirst line\nsecond line\n\n- a\n- b\n\n1. one\n2) two\n> quoted\n```py\nx = 1\n\ny = 2\n```\nafter");
    expect(blocks.map((b) => b.kind)).toEqual(["heading", "paragraph", "list", "list", "quote", "code", "paragraph"]);
    expect(blocks[1]).toEqual({ kind: "paragraph", children: [{ kind: "text", text: "first line\nsecond line" }] });
    expect(blocks[2]).toMatchObject({ ordered: false, items: [[{ text: "a" }], [{ text: "b" }]] });
    expect(blocks[3]).toMatchObject({ ordered: true });
    expect(blocks[5]).toEqual({ kind: "code", lang: "py", text: "x = 1\n\ny = 2" });
  });

  it("keeps an unclosed fence's text as code, and raw HTML as text", () => {
    expect(parseMarkdown("```\n<b>not bold</b>")).toEqual([{ kind: "code", lang: "", text: "<b>not bold</b>" }]);
    expect(parseMarkdown('<img src=x onerror="alert(1)">')).toEqual([
      { kind: "paragraph", children: [{ kind: "text", text: '<img src=x onerror="alert(1)">' }] },
    ]);
  });
});

describe("parseInline", () => {
  it("reads code, strong, em and links; markers inside code stay text", () => {
    expect(parseInline("a `**x**` **b *c* f** _d_ [e](https://example.com)")).toEqual([
      { kind: "text", text: "a " },
      { kind: "code", text: "**x**" },
      { kind: "text", text: " " },
      { kind: "strong", children: [{ kind: "text", text: "b " }, { kind: "em", children: [{ kind: "text", text: "c" }] }, { kind: "text", text: " f" }] },
      { kind: "text", text: " " },
      { kind: "em", children: [{ kind: "text", text: "d" }] },
      { kind: "text", text: " " },
      { kind: "link", href: "https://example.com", children: [{ kind: "text", text: "e" }] },
    ]);
  });

  it("makes links only of http(s) and mailto addresses", () => {
    expect(parseInline("[x](javascript:alert(1))")).toEqual([{ kind: "text", text: "[x](javascript:alert(1)" }, { kind: "text", text: ")" }]);
    expect(safeHref("JAVASCRIPT:alert(1)")).toBeNull();
    expect(safeHref("data:text/html,x")).toBeNull();
    expect(safeHref("mailto:a@b.c")).toBe("mailto:a@b.c");
  });

  it("leaves snake_case and lone asterisks alone", () => {
    expect(parseInline("snake_case_name and 2 * 3 * 4")).toEqual([{ kind: "text", text: "snake_case_name and 2 * 3 * 4" }]);
    expect(parseInline("window.__pwned = 1; window.__pwned = 2")).toEqual([{ kind: "text", text: "window.__pwned = 1; window.__pwned = 2" }]);
    expect(parseInline("__strong__ and _em_")).toMatchObject([{ kind: "strong" }, { kind: "text" }, { kind: "em" }]);
  });
});
