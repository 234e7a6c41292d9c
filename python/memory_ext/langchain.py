"""LangChain adapter: `MemoryExChatMessageHistory`, a `BaseChatMessageHistory` kept in
memory_ext, and the context window as LangChain messages (the server-side replacement for
`trim_messages(..., strategy="last")`).

    from memory_ext.langchain import MemoryExChatMessageHistory
    history = MemoryExChatMessageHistory(session_id, client=MemoryClient(dsn, user_id=uid))

Message mapping (lossless for every message type memory_ext can store):
HumanMessage → user, AIMessage → assistant (its `tool_calls` as OpenAI tool calls, arguments as
JSON), ToolMessage → tool (`tool_call_id`), SystemMessage → system, ChatMessage with one of those
roles (or `developer`, stored as system). What has no column (LangChain ids, additional_kwargs,
response_metadata, usage_metadata, invalid tool calls, status, artifact, list contents, names
OpenAI would reject) is kept in the message's `metadata["langchain"]` and restored on read.
FunctionMessage (OpenAI's retired `function` role) is refused with ValueError.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, FunctionMessage, HumanMessage, SystemMessage, ToolMessage

from . import calls
from ._convert import compact, expand_combined, json_safe, openai_tool_call, parse_arguments, split_name
from .errors import NotFoundError
from .models import Message, Window
from .sessions import Sessions, find_conversation, key_as_id

__all__ = ["MemoryExChatMessageHistory", "to_stored", "from_stored", "from_openai", "window_messages"]


def _text(content: Any) -> Tuple[str, Any]:
    """(the text to store and count, the original content when it is not a plain string)."""
    if isinstance(content, str):
        return content, None
    parts = [p if isinstance(p, str) else p.get("text", "") for p in content
             if isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text")]
    return "".join(parts), json_safe(content)


def to_stored(message: BaseMessage) -> Dict[str, Any]:
    """A LangChain message as the keys of memory_ext's add_messages."""
    if isinstance(message, FunctionMessage):
        raise ValueError("FunctionMessage (the retired `function` role) cannot be stored; use ToolMessage")
    content, original = _text(message.content)
    name, long_name = split_name(message.name)
    extra: Dict[str, Any] = {"id": message.id, "content": original, "name": long_name,
                             "additional_kwargs": json_safe(message.additional_kwargs),
                             "response_metadata": json_safe(message.response_metadata)}
    out: Dict[str, Any] = {"content": content, "name": name}
    if isinstance(message, HumanMessage):
        out["role"] = "user"
    elif isinstance(message, AIMessage):
        out["role"] = "assistant"
        if message.tool_calls:
            out["tool_calls"] = [openai_tool_call(c.get("id"), c["name"], c.get("args")) for c in message.tool_calls]
        extra["invalid_tool_calls"] = json_safe(message.invalid_tool_calls)
        extra["usage_metadata"] = json_safe(message.usage_metadata)
    elif isinstance(message, ToolMessage):
        out.update(role="tool", tool_call_id=message.tool_call_id)
        extra["status"] = None if message.status == "success" else message.status
        extra["artifact"] = json_safe(message.artifact)
    elif isinstance(message, SystemMessage):
        out["role"] = "system"
    elif isinstance(message, ChatMessage) and message.role in ("user", "assistant", "system", "developer"):
        out["role"] = "system" if message.role == "developer" else message.role
        extra["chat_role"] = message.role
    else:
        raise ValueError(f"cannot store a {type(message).__name__} with role {getattr(message, 'role', None)!r}: "
                         "memory_ext keeps user, assistant, system and tool messages")
    extra = compact(extra)
    out["metadata"] = {"langchain": extra} if extra else None
    return out


def _common(extra: Dict[str, Any], name: Optional[str]) -> Dict[str, Any]:
    kw: Dict[str, Any] = {"id": extra.get("id"), "additional_kwargs": extra.get("additional_kwargs") or {},
                          "response_metadata": extra.get("response_metadata") or {}}
    if name or extra.get("name"):
        kw["name"] = name or extra.get("name")
    return kw


def _tool_calls(openai_calls: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{"id": c["id"], "name": c["function"]["name"], "args": parse_arguments(c["function"].get("arguments")),
             "type": "tool_call"} for c in openai_calls]


def from_stored(message: Message) -> List[BaseMessage]:
    """A stored message as LangChain messages (one, or an AIMessage plus ToolMessages for a
    combined call-and-result record)."""
    extra = (message.metadata or {}).get("langchain") or {}
    content = extra.get("content", message.content)
    kw = _common(extra, message.name)
    if "chat_role" in extra:
        return [ChatMessage(content=content, role=extra["chat_role"], **kw)]
    if message.role == "user":
        return [HumanMessage(content=content, **kw)]
    if message.role == "system":
        return [SystemMessage(content=content, **kw)]
    if message.role == "tool":
        return [ToolMessage(content=content, tool_call_id=message.tool_call_id, status=extra.get("status", "success"),
                            artifact=extra.get("artifact"), **kw)]
    openai_calls, results = expand_combined(message.tool_calls or [])
    ai = AIMessage(content=content, tool_calls=_tool_calls(openai_calls),
                   invalid_tool_calls=extra.get("invalid_tool_calls") or [],
                   usage_metadata=extra.get("usage_metadata"), **kw)
    return [ai] + [ToolMessage(content=out, tool_call_id=cid) for cid, out in results]


def from_openai(message: Mapping[str, Any]) -> BaseMessage:
    """One message of an OpenAI messages array (a build_context window) as a LangChain message."""
    role, content = message["role"], message.get("content") or ""
    kw = {"name": message["name"]} if message.get("name") else {}
    if role == "system":
        return SystemMessage(content=content, **kw)
    if role == "user":
        return HumanMessage(content=content, **kw)
    if role == "tool":
        return ToolMessage(content=content, tool_call_id=message["tool_call_id"], **kw)
    return AIMessage(content=content, tool_calls=_tool_calls(message.get("tool_calls") or []), **kw)


def window_messages(window: Window) -> List[BaseMessage]:
    return [from_openai(m) for m in window.messages]


class MemoryExChatMessageHistory(BaseChatMessageHistory):
    """Chat history of one session, stored as one memory_ext conversation (see
    `memory_ext.sessions` for how the session id maps to it).

    `client` (MemoryClient) serves the sync methods, `async_client` (AsyncMemoryClient) the
    async ones; pass either or both. `agent_id`, `title` and `metadata` are given to the
    conversation when the first message creates it."""

    def __init__(self, session_id: str, client: Any = None, *, async_client: Any = None, agent_id: Any = None,
                 title: Optional[str] = None, metadata: Optional[Mapping[str, Any]] = None):
        if client is None and async_client is None:
            raise ValueError("pass client= (MemoryClient) and/or async_client= (AsyncMemoryClient)")
        self.session_id = session_id
        self.client, self.async_client = client, async_client
        self._sessions = Sessions(agent_id, title, metadata)
        self._cid = key_as_id(session_id)

    # -- sync --------------------------------------------------------------------------------
    @property
    def conversation_id(self):
        """The conversation's id, created when the session has none yet (looked up once among the
        caller's conversations when the key is not a UUID; see `memory_ext.sessions`)."""
        if self._cid is None:
            self._cid = self.client.run(self._sessions.open(self.session_id))
        return self._cid

    def _existing_id(self):
        """The conversation's id if it exists (None: the session was never written)."""
        if self._cid is None:
            self._cid = self.client.run(find_conversation(self.session_id))
        return self._cid

    @property
    def messages(self) -> List[BaseMessage]:  # type: ignore[override]
        cid = self._existing_id()
        return [m for stored in self.client.all_messages(cid) for m in from_stored(stored)] if cid else []

    def get_messages(self) -> List[BaseMessage]:
        return self.messages

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        rows = [to_stored(m) for m in messages]
        cid = self.conversation_id
        self.client.run(self._sessions.ensure(self.session_id, cid), calls.add_messages(cid, rows))

    def clear(self) -> None:
        """Deletes the conversation (messages, summaries, jobs); the next message starts it anew."""
        if self._existing_id():
            self.client.delete_conversation(self._cid)

    def context(self, max_tokens: Optional[int] = None, system_prompt: Optional[str] = None) -> List[BaseMessage]:
        """The newest messages that fit `max_tokens`, counted exactly, tool calls never split from
        their results, the stored summary in place of older history when there is one: what
        `trim_messages(history.messages, strategy="last", ...)` returns, computed in the database."""
        return window_messages(self.window(max_tokens, system_prompt))

    def window(self, max_tokens: Optional[int] = None, system_prompt: Optional[str] = None) -> Window:
        """The whole build_context result (messages as OpenAI dicts, token_count, what was left out)."""
        try:
            cid = self._existing_id()
            if cid is None:
                raise NotFoundError("no conversation yet")
            return self.client.build_context(cid, max_tokens, system_prompt)
        except NotFoundError:
            return _empty_window(self.client, max_tokens, system_prompt)

    def summarized_context(self, max_tokens: Optional[int] = None,
                           system_prompt: Optional[str] = None) -> Tuple[List[BaseMessage], Window]:
        """The summary-aware variant: the window (whose older history is the newest summary when
        it does not all fit) and its statistics; when the history not covered by a summary has
        grown past the threshold, a summary job is queued for the background worker, so the next
        windows carry the older turns as a summary instead of dropping them."""
        window = self.window(max_tokens, system_prompt)
        if window.included_messages and self.client.should_summarize(self.conversation_id):
            self.client.request_summary(self.conversation_id)
        return window_messages(window), window

    # -- async -------------------------------------------------------------------------------
    async def _aconversation_id(self):
        if self._cid is None:
            self._cid = await self.async_client.run(self._sessions.open(self.session_id))
        return self._cid

    async def _aexisting_id(self):
        if self._cid is None:
            self._cid = await self.async_client.run(find_conversation(self.session_id))
        return self._cid

    async def aget_messages(self) -> List[BaseMessage]:
        cid = await self._aexisting_id()
        stored = await self.async_client.all_messages(cid) if cid else []
        return [m for s in stored for m in from_stored(s)]

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        rows = [to_stored(m) for m in messages]
        cid = await self._aconversation_id()
        await self.async_client.run(self._sessions.ensure(self.session_id, cid), calls.add_messages(cid, rows))

    async def aclear(self) -> None:
        if await self._aexisting_id():
            await self.async_client.delete_conversation(self._cid)

    async def acontext(self, max_tokens: Optional[int] = None, system_prompt: Optional[str] = None) -> List[BaseMessage]:
        try:
            cid = await self._aexisting_id()
            if cid is None:
                raise NotFoundError("no conversation yet")
            window = await self.async_client.build_context(cid, max_tokens, system_prompt)
        except NotFoundError:
            window = await _empty_window(self.async_client, max_tokens, system_prompt)
        return window_messages(window)


def _empty_window(client: Any, max_tokens: Optional[int], system_prompt: Optional[str]) -> Any:
    """The window of a session with no conversation yet: the system prompt alone (an awaitable
    with the async client)."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return client.build_context_from(system, max_tokens or 8000, None)
