"""A conversation as a PDF a person can read: its title, then every message with its role, number
and time, tool calls with their input and the tool's result. Built from memory_ext's `json`
export with fpdf2 and the DejaVu fonts (Debian's fonts-dejavu-core: every script the fonts
cover, not only Latin-1)."""
from __future__ import annotations

import datetime
import json
import os
from typing import Any, Dict, List

from fpdf import FPDF

FONT_DIR = os.environ.get("CHAT_APP_FONT_DIR", "/usr/share/fonts/truetype/dejavu")
ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}
ROLE_COLOURS = {"user": (54, 84, 216), "assistant": (46, 157, 87), "system": (107, 115, 133), "tool": (176, 112, 0)}


def _when(value: Any) -> str:
    if not value:
        return ""
    try:
        return datetime.datetime.fromisoformat(str(value)).astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(value)


class _Document(FPDF):
    def __init__(self, title: str):
        super().__init__(format="A4")
        self.doc_title = title
        for style, file in (("", "DejaVuSans.ttf"), ("B", "DejaVuSans-Bold.ttf")):
            self.add_font("Sans", style, os.path.join(FONT_DIR, file))
        self.add_font("Mono", "", os.path.join(FONT_DIR, "DejaVuSansMono.ttf"))
        self.set_title(title)
        self.set_creator("memory_ext chat")
        self.set_auto_page_break(True, margin=16)
        self.set_margins(18, 16, 18)

    def footer(self):
        self.set_y(-12)
        self.set_font("Sans", "", 8)
        self.set_text_color(120, 120, 120)
        self.cell(0, 5, f"{self.doc_title}  ·  page {self.page_no()}/{{nb}}", align="C")


def conversation_pdf(export: Dict[str, Any]) -> bytes:
    """The PDF of an `export_conversation(id, 'json')` document."""
    conversation = export.get("conversation") or {}
    messages: List[Dict[str, Any]] = export.get("messages") or []
    title = conversation.get("title") or "Conversation"
    results = {m.get("tool_call_id"): m for m in messages if m.get("role") == "tool" and m.get("tool_call_id")}
    calls = {c.get("id") for m in messages for c in (m.get("tool_calls") or []) if isinstance(c, dict)}

    pdf = _Document(title)
    pdf.add_page()
    width = pdf.epw
    pdf.set_font("Sans", "B", 17)
    pdf.multi_cell(width, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Sans", "", 9)
    pdf.set_text_color(110, 115, 130)
    pdf.multi_cell(width, 5, f"{len(messages)} messages · exported {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)

    def text_block(text: str, font: str = "Sans", size: float = 10.5, indent: float = 0):
        pdf.set_x(pdf.l_margin + indent)
        pdf.set_font(font, "", size)
        pdf.set_text_color(29, 35, 48)
        pdf.multi_cell(width - indent, 5.2, text or "", new_x="LMARGIN", new_y="NEXT")

    for m in messages:
        role = m.get("role", "")
        if role == "tool" and m.get("tool_call_id") in calls:
            continue  # printed under its call
        pdf.set_font("Sans", "B", 9)
        pdf.set_text_color(*ROLE_COLOURS.get(role, (0, 0, 0)))
        pdf.multi_cell(width, 5, f"{ROLE_NAMES.get(role, role)}  ·  #{m.get('seq', '')}  ·  {_when(m.get('created_at'))}", new_x="LMARGIN", new_y="NEXT")
        if m.get("content"):
            text_block(m["content"])
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            name = fn.get("name") or call.get("tool") or "tool"
            arguments = fn.get("arguments") if fn else json.dumps(call.get("input"), ensure_ascii=False)
            pdf.set_x(pdf.l_margin + 6)
            pdf.set_font("Sans", "B", 9)
            pdf.set_text_color(176, 112, 0)
            pdf.multi_cell(width - 6, 5, f"Tool call: {name}", new_x="LMARGIN", new_y="NEXT")
            text_block(f"input: {arguments or '{}'}", "Mono", 8.5, 6)
            result = results.get(call.get("id"))
            output = result.get("content") if result else call.get("output")
            text_block(f"output: {output if output is not None else '(no result)'}", "Mono", 8.5, 6)
        if role == "tool":
            text_block(f"(result of call {m.get('tool_call_id')})", "Mono", 8.5, 6)
        pdf.ln(3)
    return bytes(pdf.output())
