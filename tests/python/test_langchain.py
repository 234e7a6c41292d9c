"""The LangChain adapter through LangChain's own interfaces: every message type round-trips
(tool calls and results included), sync and async, RunnableWithMessageHistory drives it, the
window equals trim_messages(strategy="last") with an exact counter, concurrent writers share a
session, and another user's session is never readable or writable."""
import asyncio
import threading
import uuid

import pytest
from conftest import dsn, new_user
from langchain_core.messages import AIMessage, ChatMessage, FunctionMessage, HumanMessage, SystemMessage, ToolMessage, convert_to_openai_messages, trim_messages

from memory_ext import AsyncMemoryClient, ConflictError, MemoryClient, calls
from memory_ext.langchain import MemoryExChatMessageHistory

EVERY_TYPE = [
    SystemMessage("You are terse.", id="sys-1"),
    HumanMessage("What time is it in Paris?", name="alice", id="h-1"),
    HumanMessage("named with spaces", name="Alice Smith"),
    AIMessage("", id="ai-1", tool_calls=[{"id": "call_1", "name": "clock", "args": {"tz": "Europe/Paris"}},
                                         {"id": "call_2", "name": "weather", "args": {"city": "Paris", "days": [1, 2]}}],
              usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
              response_metadata={"model_name": "gpt-4o-mini", "finish_reason": "tool_calls"}),
    ToolMessage("14:02", tool_call_id="call_1", name="clock"),
    ToolMessage("rain", tool_call_id="call_2", status="error", artifact={"raw": [1, 2, 3]}),
    AIMessage("It is 14:02 and raining.", additional_kwargs={"refusal": None, "custom": {"x": 1}},
              invalid_tool_calls=[{"id": "bad", "name": "oops", "args": "{not json", "error": "bad json", "type": "invalid_tool_call"}]),
    HumanMessage([{"type": "text", "text": "And this picture?"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]),
    ChatMessage("Internal note", role="developer"),
    ChatMessage("as a user", role="user"),
]


@pytest.fixture
def client(db):
    with MemoryClient(dsn(db), user_id=new_user()) as c:
        yield c


def test_round_trip_of_every_message_type(client):
    history = MemoryExChatMessageHistory("session-round-trip", client=client)
    history.add_messages(EVERY_TYPE)
    assert history.messages == EVERY_TYPE
    stored = client.all_messages(history.conversation_id)
    assert [m.role for m in stored] == ["system", "user", "user", "assistant", "tool", "tool", "assistant", "user",
                                         "system", "user"]
    assert stored[3].tool_calls[1]["function"] == {"name": "weather", "arguments": '{"city": "Paris", "days": [1, 2]}'}
    assert stored[2].name is None  # OpenAI rejects such names: kept in metadata instead
    assert history.window(4000).messages[3]["tool_calls"][0]["id"] == "call_1"
    history.clear()
    assert history.messages == [] and client.all_messages(history.conversation_id) == []
    history.add_message(HumanMessage("again"))
    assert [m.content for m in history.messages] == ["again"]


def test_async_round_trip(db):
    uid = new_user()

    async def main():
        async with AsyncMemoryClient(dsn(db), user_id=uid) as ac:
            history = MemoryExChatMessageHistory("session-async", async_client=ac)
            await history.aadd_messages(EVERY_TYPE[:6])
            await history.aadd_messages(EVERY_TYPE[6:])
            got = await history.aget_messages()
            window = await history.acontext(60)
            await history.aclear()
            return got, window, await history.aget_messages()
    got, window, after = asyncio.run(main())
    assert got == EVERY_TYPE and after == []
    assert isinstance(window[-1], HumanMessage) and window[-1].content == "as a user"


def test_refused_types_change_nothing(client):
    history = MemoryExChatMessageHistory("session-refused", client=client)
    with pytest.raises(ValueError):
        history.add_messages([HumanMessage("first"), FunctionMessage("x", name="f")])
    with pytest.raises(ValueError):
        history.add_messages([ChatMessage("x", role="critic")])
    with pytest.raises(ValueError):  # a tool result without its call: memory_ext's own check, 22023
        history.add_messages([HumanMessage("first"), ToolMessage("orphan", tool_call_id="nope")])
    assert history.messages == []


def test_runnable_with_message_history(client):
    """LangChain's own machinery: RunnableWithMessageHistory reads and appends through the adapter."""
    from langchain_core.runnables import RunnableLambda
    from langchain_core.runnables.history import RunnableWithMessageHistory

    def model(messages):
        return AIMessage(f"echo {messages[-1].content} after {len(messages) - 1} earlier")
    chain = RunnableWithMessageHistory(RunnableLambda(model),
                                       lambda session_id: MemoryExChatMessageHistory(session_id, client=client))
    cfg = {"configurable": {"session_id": "runnable"}}
    assert chain.invoke([HumanMessage("one")], cfg).content == "echo one after 0 earlier"
    assert chain.invoke([HumanMessage("two")], cfg).content == "echo two after 2 earlier"
    assert [m.content for m in MemoryExChatMessageHistory("runnable", client=client).messages] == [
        "one", "echo one after 0 earlier", "two", "echo two after 2 earlier"]


def test_context_equals_trim_messages_last(client):
    import tiktoken

    import support.tiktoken_offline  # noqa: F401  (tiktoken's vocabularies from the crate's copies, no download)
    enc = tiktoken.get_encoding("cl100k_base")

    def counter(messages):  # the OpenAI cookbook's count, which memory_ext reproduces exactly
        total = 3
        for m in convert_to_openai_messages(messages):
            total += 3 + sum(len(enc.encode(v)) for v in m.values() if isinstance(v, str)) + (1 if "name" in m else 0)
        return total
    history = MemoryExChatMessageHistory("session-trim", client=client)
    history.add_messages([HumanMessage(f"question {i}: " + "words " * (i % 7)) if i % 2 == 0
                          else AIMessage(f"answer {i} " + "more " * (i % 5)) for i in range(200)])
    for budget in (50, 300, 1000, 100_000):
        expected = trim_messages(history.messages, max_tokens=budget, strategy="last", token_counter=counter)
        got = history.context(budget)
        assert [(m.type, m.content) for m in got] == [(m.type, m.content) for m in expected]
        assert counter(got) <= budget


def test_summarized_context_queues_a_summary(client):
    agent = client.create_agent("summarizing", summarize_threshold=1000)
    history = MemoryExChatMessageHistory("session-summary", client=client, agent_id=agent.id)
    history.add_messages([HumanMessage("long message number %d " % i + "lorem ipsum " * 60) for i in range(10)])
    messages, window = history.summarized_context(500, "Be brief.")
    assert window.token_count <= 500 and isinstance(messages[0], SystemMessage)
    assert client.summary_status(history.conversation_id).job is not None
    client.add_summary(history.conversation_id, 8, "The user sent eight long messages.")
    messages, window = history.summarized_context(500, "Be brief.")
    assert window.summary_included and messages[1].content.startswith("Summary of the earlier conversation:")


def test_concurrent_writers_to_one_session(db):
    uid = new_user()
    with MemoryClient(dsn(db), user_id=uid, max_connections=4) as c:
        def writer(w):
            history = MemoryExChatMessageHistory("shared-session", client=c)
            for i in range(8):
                history.add_messages([HumanMessage(f"w{w} q{i}"), AIMessage(f"w{w} a{i}")])
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        history = MemoryExChatMessageHistory("shared-session", client=c)
        msgs = history.messages
        assert len(msgs) == 64 and len(set(m.content for m in msgs)) == 64
        # each add_messages call is one statement: its pair stays adjacent
        assert all(msgs[i].content.replace("q", "a") == msgs[i + 1].content for i in range(0, 64, 2))
        assert [m.seq for m in c.all_messages(history.conversation_id)] == list(range(1, 65))


def test_another_users_session_is_invisible(db):
    alice, mallory = new_user(), new_user()
    with MemoryClient(dsn(db), user_id=alice) as a, MemoryClient(dsn(db), user_id=mallory) as m:
        # the same key is another conversation per user
        MemoryExChatMessageHistory("default", client=a).add_messages([HumanMessage("alice's secret")])
        assert MemoryExChatMessageHistory("default", client=m).messages == []
        MemoryExChatMessageHistory("default", client=m).add_messages([HumanMessage("mallory")])
        assert [x.content for x in MemoryExChatMessageHistory("default", client=a).messages] == ["alice's secret"]
        # a UUID session id is the conversation id: someone else's cannot be read or written
        sid = str(uuid.uuid4())
        MemoryExChatMessageHistory(sid, client=a).add_messages([HumanMessage("uuid secret")])
        stolen = MemoryExChatMessageHistory(sid, client=m)
        assert stolen.messages == [] and stolen.context(1000) == []
        with pytest.raises(ConflictError):
            stolen.add_messages([HumanMessage("injected")])
        stolen.clear()
        assert [x.content for x in MemoryExChatMessageHistory(sid, client=a).messages] == ["uuid secret"]


def test_a_session_key_cannot_be_taken_by_another_user(db):
    """A key is looked up among the caller's own conversations; one not used yet gets a random
    id. In 0.2.0 the id was uuid5(user id, key): another user who knew both created that
    conversation first, and the victim's adapter failed with a conflict from then on."""
    import uuid as _uuid
    victim, squatter = new_user(), new_user()
    with MemoryClient(dsn(db), user_id=victim) as v, MemoryClient(dsn(db), user_id=squatter) as s:
        # what 0.2.0 would have used as the victim's "support" conversation, taken in advance
        guessed = _uuid.uuid5(_uuid.UUID("8f6c1d2e-55a3-4c1b-9d0e-6d656d6f7279"), f"{victim}:support")
        s.run(calls.ensure_conversation(guessed, _uuid.UUID(int=0), "squatted", {"session_key": "support"}))
        history = MemoryExChatMessageHistory("support", client=v)
        history.add_messages([HumanMessage("my order number is 77")])
        assert [m.content for m in MemoryExChatMessageHistory("support", client=v).messages] == ["my order number is 77"]
        assert history.conversation_id != guessed
        # the squatter's own "support" is the squatter's, and holds nothing of the victim's
        assert MemoryExChatMessageHistory("support", client=s).conversation_id == guessed
        assert MemoryExChatMessageHistory("support", client=s).messages == []
