"""The LlamaIndex adapter through LlamaIndex's interfaces: BaseChatStore's sync and async
methods, ChatMemoryBuffer on top of it, lossless round trips, keys per user."""
import asyncio

import pytest
from conftest import dsn, new_user
from llama_index.core.base.llms.types import ImageBlock, TextBlock
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import ChatMemoryBuffer

from memory_ext import AsyncMemoryClient, MemoryClient
from memory_ext.llama_index import MemoryExChatStore

MESSAGES = [
    ChatMessage(role="system", content="You are terse."),
    ChatMessage(role="user", content="What time is it?", additional_kwargs={"trace": {"id": 7}}),
    ChatMessage(role="assistant", content=None, additional_kwargs={"tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "clock", "arguments": "{\"tz\": \"UTC\"}"}}]}),
    ChatMessage(role="tool", content="12:00", additional_kwargs={"tool_call_id": "call_1", "name": "clock"}),
    ChatMessage(role="assistant", content="It is noon."),
    ChatMessage(role="user", blocks=[TextBlock(text="And this?"), ImageBlock(url="https://x/y.png")]),
    ChatMessage(role="developer", content="note"),
    ChatMessage(role="chatbot", content="legacy role"),
]


@pytest.fixture
def client(db):
    with MemoryClient(dsn(db), user_id=new_user()) as c:
        yield c


def test_store_methods(client):
    store = MemoryExChatStore(client=client)
    store.set_messages("k1", MESSAGES)
    assert store.get_messages("k1") == MESSAGES
    store.add_message("k2", ChatMessage(role="user", content="other key"))
    assert store.get_keys() == ["k1", "k2"]
    assert store.delete_last_message("k1") == MESSAGES[-1]
    assert store.delete_message("k1", 0) == MESSAGES[0]
    assert store.get_messages("k1") == MESSAGES[1:-1]
    assert store.delete_message("k1", 99) is None
    store.set_messages("k1", MESSAGES[:2])  # replaces, atomically
    assert store.get_messages("k1") == MESSAGES[:2]
    assert store.delete_messages("k2") == [ChatMessage(role="user", content="other key")]
    assert store.get_messages("k2") == [] and store.get_keys() == ["k1"]
    with pytest.raises(ValueError):
        store.set_messages("k1", [ChatMessage(role="function", content="x")])
    assert store.get_messages("k1") == MESSAGES[:2]  # the failed replace changed nothing


def test_async_store_methods(db):
    async def main():
        async with AsyncMemoryClient(dsn(db), user_id=new_user()) as ac:
            store = MemoryExChatStore(async_client=ac)
            await store.aset_messages("a", MESSAGES[:4])
            await asyncio.gather(*(store.async_add_message("a", ChatMessage(role="user", content=f"c{i}"))
                                   for i in range(8)))
            got = await store.aget_messages("a")
            last = await store.adelete_last_message("a")
            first = await store.adelete_message("a", 0)
            keys = await store.aget_keys()
            gone = await store.adelete_messages("a")
            return got, last, first, keys, gone, await store.aget_messages("a")
    got, last, first, keys, gone, after = asyncio.run(main())
    assert got[:4] == MESSAGES[:4] and sorted(m.content for m in got[4:]) == [f"c{i}" for i in range(8)]
    assert last == got[-1] and first == MESSAGES[0] and keys == ["a"]
    assert gone == got[1:-1] and after == []


def test_chat_memory_buffer(client):
    store = MemoryExChatStore(client=client)
    memory = ChatMemoryBuffer.from_defaults(chat_store=store, chat_store_key="buffer", token_limit=2000)
    memory.put(ChatMessage(role="user", content="hello"))
    memory.put(ChatMessage(role="assistant", content="hi!"))
    assert [m.content for m in memory.get_all()] == ["hello", "hi!"]
    assert [m.content for m in memory.get()] == ["hello", "hi!"]
    assert [m.content for m in store.get_messages("buffer")] == ["hello", "hi!"]
    memory.reset()
    assert store.get_messages("buffer") == []


def test_keys_are_per_user(db):
    with MemoryClient(dsn(db), user_id=new_user()) as a, MemoryClient(dsn(db), user_id=new_user()) as b:
        sa, sb = MemoryExChatStore(client=a), MemoryExChatStore(client=b)
        sa.add_message("shared-name", ChatMessage(role="user", content="a's"))
        assert sb.get_messages("shared-name") == [] and sb.get_keys() == []
        sb.add_message("shared-name", ChatMessage(role="user", content="b's"))
        assert [m.content for m in sa.get_messages("shared-name")] == ["a's"]
        assert sb.delete_messages("shared-name")[0].content == "b's"
        assert [m.content for m in sa.get_messages("shared-name")] == ["a's"]
