import { describe, expect, it, vi } from "vitest";
import { ApiError, createApi, plainError } from "./api";
import { barLayout, periodDays } from "./chart";
import { conversationFromHash, hashFor, tokenFromHash } from "./route";
import { snippetParts } from "./snippet";

describe("snippetParts", () => {
  it("turns ** marks into highlighted parts, keeping every character as text", () => {
    expect(snippetParts("the **secret** **plans** <b>")).toEqual([
      { text: "the ", match: false },
      { text: "secret", match: true },
      { text: " ", match: false },
      { text: "plans", match: true },
      { text: " <b>", match: false },
    ]);
    expect(snippetParts("no marks")).toEqual([{ text: "no marks", match: false }]);
    expect(snippetParts("")).toEqual([]);
  });
});

describe("routes", () => {
  const id = "0b9e8f1c-1a2b-4c3d-8e9f-0a1b2c3d4e5f";
  it("gives each conversation its address and reads it back", () => {
    expect(hashFor(id)).toBe(`#/c/${id}`);
    expect(conversationFromHash(hashFor(id))).toBe(id);
    expect(hashFor(null)).toBe("#/");
  });
  it("ignores what is not a conversation's address", () => {
    expect(conversationFromHash("#/")).toBeNull();
    expect(conversationFromHash("#/c/not-a-uuid")).toBeNull();
    expect(conversationFromHash(`#/c/${id}/x`)).toBeNull();
  });
  it("reads a sign-in link's token", () => {
    expect(tokenFromHash("#token=abc.def")).toBe("abc.def");
    expect(tokenFromHash(`#/c/${id}`)).toBeNull();
  });
});

function response(status: number, body: unknown) {
  return new Response(body === null ? null : JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

describe("the API client", () => {
  it("sends the bearer token and JSON, and returns the JSON", async () => {
    const fetchImpl = vi.fn(async () => response(200, { ok: 1 }));
    const api = createApi("tok", () => undefined, fetchImpl as unknown as typeof fetch);
    expect(await api("POST", "/x", { a: 1 })).toEqual({ ok: 1 });
    const [path, init] = (fetchImpl.mock.calls[0] as unknown as [string, RequestInit]);
    expect(path).toBe("/x");
    expect((init.headers as Record<string, string>).Authorization).toBe("Bearer tok");
    expect(init.body).toBe('{"a":1}');
  });

  it("keeps the server's words for the user's own mistakes, with the hint", async () => {
    const api = createApi("t", () => undefined, (async () => response(422, { error: "message too long", hint: "shorten it" })) as typeof fetch);
    await expect(api("GET", "/x")).rejects.toMatchObject({ message: "message too long", status: 422, hint: "shorten it" });
  });

  it("never shows a server failure's text (it may name internal hosts)", async () => {
    const api = createApi("t", () => undefined, (async () => response(502, { error: "http://10.0.0.7:8000/v1 refused" })) as typeof fetch);
    const err: ApiError = await api("GET", "/x").catch((e: ApiError) => e) as ApiError;
    expect(err).toBeInstanceOf(ApiError);
    expect(err.message).toBe(plainError(502));
    expect(err.message).not.toContain("10.0.0.7");
  });

  it("signs out on 401 and says why; a network failure is said plainly", async () => {
    const signedOut = vi.fn();
    const api = createApi("t", signedOut, (async () => response(401, { error: "invalid token" })) as typeof fetch);
    await expect(api("GET", "/me")).rejects.toMatchObject({ status: 401 });
    expect(signedOut).toHaveBeenCalledOnce();
    const offline = createApi("t", () => undefined, (async () => { throw new TypeError("Failed to fetch"); }) as typeof fetch);
    await expect(offline("GET", "/x")).rejects.toMatchObject({ status: 0, message: plainError(0) });
  });
});

describe("barLayout", () => {
  it("scales every series to the largest value and places one group per day", () => {
    const bars = barLayout([[10, 20], [5, 0]], 100, 50, 4);
    expect(bars).toHaveLength(4);
    const top = bars.find((b) => b.series === 0 && b.index === 1)!;
    expect([top.height, top.y]).toEqual([50, 0]);
    expect(bars.find((b) => b.series === 1 && b.index === 1)!.height).toBe(0);
    expect(bars.find((b) => b.series === 0 && b.index === 0)!.height).toBe(25);
    const second = bars.find((b) => b.series === 0 && b.index === 1)!;
    expect(second.x).toBeGreaterThanOrEqual(50); // the second day's group starts in its half
    expect(barLayout([], 100, 50)).toEqual([]);
  });
});

describe("periodDays", () => {
  it("lists the period's UTC days, oldest first, ending today, across a month's end", () => {
    expect(periodDays(3, new Date("2026-03-01T23:30:00Z"))).toEqual(["2026-02-27", "2026-02-28", "2026-03-01"]);
    expect(periodDays(1, new Date("2026-12-05T00:00:00Z"))).toEqual(["2026-12-05"]);
  });
});
