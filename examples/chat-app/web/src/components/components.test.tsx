import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Message } from "../types";
import { Composer, MAX_MESSAGE_CHARS } from "./Composer";
import { MessageList } from "./MessageList";
import { TokenMeter, meterLevel } from "./TokenMeter";

afterEach(cleanup);
Element.prototype.scrollIntoView = () => undefined;

function msg(seq: number, role: Message["role"], content: string, extra: Partial<Message> = {}): Message {
  return { id: `m${seq}`, seq, role, content, tool_calls: null, tool_call_id: null, token_count: 1, created_at: null, ...extra };
}

describe("MessageList", () => {
  it("shows a tool's result inside its call's block, and hostile text as text", () => {
    const call = { id: "call_1", type: "function", function: { name: "clock", arguments: '{"tz": "UTC"}' } };
    const { container } = render(
      <MessageList hasEarlier={false} onEarlier={() => undefined} messages={[
        msg(1, "user", '<img src=x onerror="alert(1)">'),
        msg(2, "assistant", "", { tool_calls: [call] }),
        msg(3, "tool", '{"now": "12:00"}', { tool_call_id: "call_1" }),
        msg(4, "tool", "orphan", { tool_call_id: "call_0" }),
      ]} />,
    );
    expect(container.querySelectorAll("img").length).toBe(0);
    expect(container.querySelector(".msg.user .content")!.textContent).toBe('<img src=x onerror="alert(1)">');
    const blocks = container.querySelectorAll("details.tool");
    expect(blocks.length).toBe(2); // the call (with its result) and the result whose call is not on the page
    expect(blocks[0].querySelector("summary")!.textContent).toBe("tool call: clock");
    expect(blocks[0].querySelector("pre.output")!.textContent).toBe('{"now": "12:00"}');
    expect(blocks[1].querySelector("summary")!.textContent).toBe("tool result (call_0)");
  });

  it("shows the pending turn and highlights a search hit's message", () => {
    const { container } = render(
      <MessageList hasEarlier onEarlier={() => undefined} waiting pendingText="still thinking?" focusSeq={2}
                   messages={[msg(1, "user", "a"), msg(2, "assistant", "b")]} />,
    );
    expect(container.querySelector(".msg.thinking")).not.toBeNull();
    expect(container.querySelector(".msg.pending .content")!.textContent).toBe("still thinking?");
    expect(container.querySelector(".msg.highlight")!.getAttribute("data-seq")).toBe("2");
    expect((container.querySelector("#load-earlier") as HTMLButtonElement).hidden).toBe(false);
  });
});

describe("Composer", () => {
  it("sends once however fast Enter is pressed, and clears when the turn is accepted", async () => {
    let finish: (ok: boolean) => void = () => undefined;
    const onSend = vi.fn(() => new Promise<boolean>((r) => { finish = r; }));
    const { rerender } = render(<Composer busy={false} onSend={onSend} />);
    const box = screen.getByRole("textbox", { name: "Message" }) as HTMLTextAreaElement;
    fireEvent.change(box, { target: { value: "hello" } });
    fireEvent.keyDown(box, { key: "Enter" });
    rerender(<Composer busy onSend={onSend} />);
    fireEvent.keyDown(box, { key: "Enter" });
    fireEvent.click(screen.getByRole("button"));
    expect(onSend).toHaveBeenCalledTimes(1);
    expect((screen.getByRole("button") as HTMLButtonElement).disabled).toBe(true);
    await act(async () => finish(true));
    expect(box.value).toBe("");
  });

  it("Shift+Enter is a new line, not a send", () => {
    const onSend = vi.fn(async () => true);
    render(<Composer busy={false} onSend={onSend} />);
    const box = screen.getByRole("textbox", { name: "Message" });
    fireEvent.change(box, { target: { value: "line" } });
    fireEvent.keyDown(box, { key: "Enter", shiftKey: true });
    expect(onSend).not.toHaveBeenCalled();
  });

  it("says a message is too long before sending it, and does not cut it", () => {
    const onSend = vi.fn(async () => true);
    render(<Composer busy={false} onSend={onSend} />);
    const box = screen.getByRole("textbox", { name: "Message" }) as HTMLTextAreaElement;
    const long = "x".repeat(MAX_MESSAGE_CHARS + 5);
    fireEvent.change(box, { target: { value: long } });
    expect(box.value.length).toBe(MAX_MESSAGE_CHARS + 5);
    expect(screen.getByRole("status").textContent).toContain("the limit is 8,000");
    expect(screen.getByRole("status").textContent).toContain("Shorten it by 5");
    fireEvent.keyDown(box, { key: "Enter" });
    expect(onSend).not.toHaveBeenCalled();
    expect((screen.getByRole("button") as HTMLButtonElement).disabled).toBe(true);
  });
});

describe("TokenMeter", () => {
  it("shows the window against the budget and what it leaves out", () => {
    const { container } = render(
      <TokenMeter context={{ token_count: 1900, max_tokens: 2000, summary_included: false, included_messages: 10, omitted_messages: 17 }} />,
    );
    expect(container.querySelector("#meter-text")!.textContent).toBe("1900 / 2000 tokens");
    expect(container.querySelector("#meter-fill")!.className).toBe("meter-fill full");
    expect(container.querySelector("#omitted")!.textContent).toBe("17 earlier messages not in context");
    expect((container.querySelector("#summary-badge") as HTMLElement).hidden).toBe(true);
  });

  it("is hidden with no conversation, and its colour follows the fill", () => {
    const { container } = render(<TokenMeter context={null} />);
    expect((container.querySelector("#meter") as HTMLElement).hidden).toBe(true);
    expect([meterLevel(0.1), meterLevel(0.6), meterLevel(0.85)]).toEqual(["", "warn", "full"]);
  });
});
