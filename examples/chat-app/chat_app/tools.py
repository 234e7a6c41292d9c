"""The demo agent's tools: their OpenAI definitions (stored on the agent in memory_ext) and the
code the app runs when the model calls one."""
from __future__ import annotations

import datetime
import json
from typing import Any, Callable, Dict, List

DEFINITIONS: List[Dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "clock", "description": "The current date and time in a time zone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string", "description": "UTC only"}}}}},
]


def _clock(args: Dict[str, Any]) -> Dict[str, Any]:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {"tz": "UTC", "now": now.isoformat()}


RUNNERS: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {"clock": _clock}


def run(call: Dict[str, Any]) -> str:
    """The result of one OpenAI tool call, as the tool message's content (errors too: the model
    reads them)."""
    fn = call.get("function") or {}
    runner = RUNNERS.get(fn.get("name"))
    if runner is None:
        return json.dumps({"error": f"unknown tool {fn.get('name')!r}"})
    try:
        args = json.loads(fn.get("arguments") or "{}")
        if not isinstance(args, dict):
            raise ValueError("arguments must be an object")
    except ValueError as e:
        return json.dumps({"error": f"bad arguments: {e}"})
    return json.dumps(runner(args))
