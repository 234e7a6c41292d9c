"""Helpers shared by the adapters' message conversions."""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Tuple

OPENAI_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ROLES = ("user", "assistant", "system", "tool")


def json_safe(value: Any) -> Any:
    """A JSON-storable copy (objects the encoder does not know become their str())."""
    return json.loads(json.dumps(value, default=str))


def compact(d: Dict[str, Any]) -> Dict[str, Any]:
    """Drops empty entries, so plain messages store no adapter metadata."""
    return {k: v for k, v in d.items() if v not in (None, {}, [], "")}


def split_name(name: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(the stored `name` column, the name kept in metadata): OpenAI accepts only short names."""
    if name is None:
        return None, None
    return (name, None) if OPENAI_NAME.match(name) else (None, name)


def openai_tool_call(call_id: Optional[str], name: str, args: Any) -> Dict[str, Any]:
    if not call_id:
        raise ValueError(f"tool call {name!r} has no id: memory_ext pairs tool results with their call by id")
    arguments = args if isinstance(args, str) else json.dumps(args if args is not None else {})
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def parse_arguments(arguments: Any) -> Any:
    if not isinstance(arguments, str):
        return arguments if arguments is not None else {}
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def expand_combined(tool_calls: List[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], List[Tuple[str, str]]]:
    """Splits stored tool calls into OpenAI calls and the results carried by combined records
    (the `{"id","tool","input","output"}` shape): (calls, [(call id, result text)])."""
    out, results = [], []
    for c in tool_calls:
        if "function" in c:
            out.append(c)
        else:
            out.append({"id": c["id"], "type": "function",
                        "function": {"name": c["tool"], "arguments": json.dumps(c.get("input") or {})}})
            output = c.get("output")
            if output is not None:
                results.append((c["id"], output if isinstance(output, str) else json.dumps(output)))
    return out, results
