"""LlamaIndex adapter: `MemoryExChatStore`, a `BaseChatStore` whose keys are memory_ext
conversations (see `memory_ext.sessions` for the mapping), for `Memory`,
`ChatMemoryBuffer` or any chat engine that takes a chat store.

    from memory_ext.llama_index import MemoryExChatStore
    store = MemoryExChatStore(client=MemoryClient(dsn, user_id=uid))
    memory = ChatMemoryBuffer.from_defaults(chat_store=store, chat_store_key="user-1")

Message mapping: roles user, assistant, system and tool are stored as such (`developer` as
system, `chatbot`/`model` as assistant, the original role kept); `additional_kwargs["tool_calls"]`
(OpenAI tool calls, dicts or the OpenAI SDK's objects) become the stored tool calls,
`additional_kwargs["tool_call_id"]` and `["name"]` their columns; other additional_kwargs and
content blocks other than one text block are kept in `metadata["llama_index"]`. The `function`
role is refused with ValueError.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from llama_index.core.llms import ChatMessage
from llama_index.core.storage.chat_store.base import BaseChatStore
from pydantic import PrivateAttr

from . import calls
from ._convert import compact, json_safe, split_name
from .models import Message
from .sessions import Sessions, find_conversation, key_as_id, session_keys

__all__ = ["MemoryExChatStore", "to_stored", "from_stored"]

_STORED_ROLE = {"user": "user", "assistant": "assistant", "system": "system", "tool": "tool",
                "developer": "system", "chatbot": "assistant", "model": "assistant"}


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def to_stored(message: ChatMessage) -> Dict[str, Any]:
    role = getattr(message.role, "value", message.role)
    if role not in _STORED_ROLE:
        raise ValueError(f"cannot store a message with role {role!r}: memory_ext keeps user, assistant, system "
                         "and tool messages")
    kwargs = dict(message.additional_kwargs)
    tool_calls = kwargs.pop("tool_calls", None)
    tool_call_id = kwargs.pop("tool_call_id", None)
    name, long_name = split_name(kwargs.pop("name", None))
    blocks = [b.model_dump(mode="json") for b in message.blocks]
    text_only = len(blocks) == 1 and blocks[0].get("block_type") == "text"
    text = "".join(b.get("text", "") for b in blocks if b.get("block_type") == "text")
    extra = compact({"role": role if _STORED_ROLE[role] != role else None,
                     "additional_kwargs": json_safe(kwargs), "name": long_name,
                     "blocks": None if text_only else blocks})
    if blocks == []:
        extra["blocks"] = []
    return {"role": _STORED_ROLE[role], "content": text, "name": name,
            "tool_calls": [json_safe(_dump(c)) for c in tool_calls] if tool_calls else None,
            "tool_call_id": tool_call_id, "metadata": {"llama_index": extra} if extra else None}


def from_stored(message: Message) -> ChatMessage:
    extra = (message.metadata or {}).get("llama_index") or {}
    kwargs: Dict[str, Any] = dict(extra.get("additional_kwargs") or {})
    if message.tool_calls:
        kwargs["tool_calls"] = message.tool_calls
    if message.tool_call_id:
        kwargs["tool_call_id"] = message.tool_call_id
    if message.name or extra.get("name"):
        kwargs["name"] = message.name or extra.get("name")
    role = extra.get("role", message.role)
    if "blocks" in extra:
        return ChatMessage.model_validate({"role": role, "blocks": extra["blocks"], "additional_kwargs": kwargs})
    return ChatMessage(role=role, content=message.content, additional_kwargs=kwargs)


class MemoryExChatStore(BaseChatStore):
    """A chat store in memory_ext: one conversation per key, created on first write with
    `agent_id`. `client` serves the sync methods, `async_client` the async ones."""

    _client: Any = PrivateAttr(default=None)
    _async_client: Any = PrivateAttr(default=None)
    _sessions: Any = PrivateAttr(default=None)
    _ids: Dict[str, Any] = PrivateAttr(default_factory=dict)

    def __init__(self, client: Any = None, *, async_client: Any = None, agent_id: Any = None,
                 metadata: Optional[Dict[str, Any]] = None, **kwargs: Any):
        super().__init__(**kwargs)
        if client is None and async_client is None:
            raise ValueError("pass client= (MemoryClient) and/or async_client= (AsyncMemoryClient)")
        self._client, self._async_client = client, async_client
        self._sessions = Sessions(agent_id, None, metadata)

    @classmethod
    def class_name(cls) -> str:
        return "MemoryExChatStore"

    def _known_id(self, key: str) -> Any:
        if key not in self._ids and key_as_id(key):
            self._ids[key] = key_as_id(key)
        return self._ids.get(key)

    def _id(self, key: str) -> Any:
        """The key's conversation id, created if the key has none yet (see memory_ext.sessions)."""
        cid = self._known_id(key)
        if cid is None:
            cid = self._ids[key] = self._client.run(self._sessions.open(key))
        return cid

    def _existing(self, key: str) -> Any:
        """The key's conversation id, or None when the key was never written."""
        cid = self._known_id(key)
        if cid is None:
            cid = self._client.run(find_conversation(key))
            if cid is not None:
                self._ids[key] = cid
        return cid

    async def _aid(self, key: str) -> Any:
        cid = self._known_id(key)
        if cid is None:
            cid = self._ids[key] = await self._async_client.run(self._sessions.open(key))
        return cid

    async def _aexisting(self, key: str) -> Any:
        cid = self._known_id(key)
        if cid is None:
            cid = await self._async_client.run(find_conversation(key))
            if cid is not None:
                self._ids[key] = cid
        return cid

    def _replace(self, key: str, cid: Any, messages: List[ChatMessage]) -> list:
        """One transaction: drop the conversation, create it again, append the messages."""
        batch = [calls.delete_conversation(cid), self._sessions.ensure(key, cid)]
        if messages:
            batch.append(calls.add_messages(cid, [to_stored(m) for m in messages]))
        return batch

    # -- sync --------------------------------------------------------------------------------
    def set_messages(self, key: str, messages: List[ChatMessage]) -> None:
        cid = self._id(key)
        self._client.run(*self._replace(key, cid, messages))

    def get_messages(self, key: str) -> List[ChatMessage]:
        cid = self._existing(key)
        return [from_stored(m) for m in self._client.all_messages(cid)] if cid else []

    def add_message(self, key: str, message: ChatMessage) -> None:
        cid = self._id(key)
        self._client.run(self._sessions.ensure(key, cid), calls.add_messages(cid, [to_stored(message)]))

    def delete_messages(self, key: str) -> Optional[List[ChatMessage]]:
        cid = self._existing(key)
        if cid is None:
            return []
        stored, _ = self._client.run(calls.all_messages(cid), calls.delete_conversation(cid))
        return [from_stored(m) for m in stored]

    def delete_message(self, key: str, idx: int) -> Optional[ChatMessage]:
        cid = self._existing(key)
        gone = self._client.delete_nth_message(cid, idx) if cid else None
        return from_stored(gone) if gone else None

    def delete_last_message(self, key: str) -> Optional[ChatMessage]:
        return self.delete_message(key, -1)

    def get_keys(self) -> List[str]:
        return self._client.run(session_keys())

    # -- async -------------------------------------------------------------------------------
    async def aset_messages(self, key: str, messages: List[ChatMessage]) -> None:
        cid = await self._aid(key)
        await self._async_client.run(*self._replace(key, cid, messages))

    async def aget_messages(self, key: str) -> List[ChatMessage]:
        cid = await self._aexisting(key)
        return [from_stored(m) for m in await self._async_client.all_messages(cid)] if cid else []

    async def async_add_message(self, key: str, message: ChatMessage) -> None:
        cid = await self._aid(key)
        await self._async_client.run(self._sessions.ensure(key, cid), calls.add_messages(cid, [to_stored(message)]))

    async def adelete_messages(self, key: str) -> Optional[List[ChatMessage]]:
        cid = await self._aexisting(key)
        if cid is None:
            return []
        stored, _ = await self._async_client.run(calls.all_messages(cid), calls.delete_conversation(cid))
        return [from_stored(m) for m in stored]

    async def adelete_message(self, key: str, idx: int) -> Optional[ChatMessage]:
        cid = await self._aexisting(key)
        gone = await self._async_client.delete_nth_message(cid, idx) if cid else None
        return from_stored(gone) if gone else None

    async def adelete_last_message(self, key: str) -> Optional[ChatMessage]:
        return await self.adelete_message(key, -1)

    async def aget_keys(self) -> List[str]:
        return await self._async_client.run(session_keys())
