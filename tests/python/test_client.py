"""The sync client against a real server: every identity mode, the whole SQL API through typed
results, SQLSTATEs mapped to exceptions, atomic transactions, bound parameters only, and the
three connection sources (DSN, connection, pool) without identity leaking between borrowers."""
import threading
import uuid

import psycopg
import pytest
from conftest import admin, claims, dsn, new_user, wait_for
from psycopg_pool import ConnectionPool

from memory_ext import (
    Agent,
    ArchivedError,
    ChatResult,
    ConflictError,
    ConnectionInTransactionError,
    Conversation,
    InvalidInputError,
    LimitExceededError,
    LLMError,
    MemoryClient,
    Message,
    NotFoundError,
    PermissionDeniedError,
    Window,
)

AGENT = uuid.UUID("a0000000-0000-0000-0000-000000000001")


@pytest.fixture(scope="module")
def client(db):
    with MemoryClient(dsn(db), user_id=new_user()) as c:
        yield c


def test_identity_modes(db):
    uid = new_user()
    # an application server's login asserting memory.user_id
    with MemoryClient(dsn(db), user_id=uid) as app:
        assert str(app.current_user_id()) == uid
        cid = app.create_conversation(AGENT, "mine").id
    # PostgREST's way: the gateway login, SET LOCAL ROLE from the claims, request.jwt.claims
    with MemoryClient(dsn(db, "authenticator"), claims=claims(uid)) as jwt:
        assert str(jwt.current_user_id()) == uid
        assert jwt.get_conversation(cid).title == "mine"
        assert jwt.run(jwt_role()) == "authenticated"
    # a login bound to its user by the operator: no identity passed at all
    with admin(db) as a:
        a.execute(f"ALTER ROLE enduser IN DATABASE {db} SET memory.login_user_id = '{uid}'")
    with MemoryClient(dsn(db, "enduser")) as bound:
        assert bound.get_conversation(cid).id == cid
    # claims from a login that is not a gateway are ignored: no identity, nothing visible
    with MemoryClient(dsn(db, "app"), claims={"sub": uid}) as forged:
        assert forged.current_user_id() is None
        with pytest.raises(NotFoundError):
            forged.get_conversation(cid)
        with pytest.raises(PermissionDeniedError) as e:
            forged.create_conversation(AGENT)
        assert e.value.sqlstate == "42501"


def jwt_role():
    from memory_ext.calls import statement
    return statement("SELECT current_user AS r", lambda rows: rows[0]["r"])


def test_conversations_and_messages(client):
    conv = client.create_conversation(AGENT, "Trip", {"k": "v"}, "gpt-4o")
    assert isinstance(conv, Conversation) and conv.encoding == "o200k_base" and conv.metadata == {"k": "v"}
    m1 = client.add_message(conv.id, "user", "Weather in Paris?", metadata={"client": "py"})
    assert isinstance(m1, Message) and m1.seq == 1 and m1.token_count > 0 and m1.metadata == {"client": "py"}
    call = [{"id": "call_1", "type": "function", "function": {"name": "forecast", "arguments": "{\"city\":\"Paris\"}"}}]
    m2, m3 = client.add_messages(conv.id, [{"role": "assistant", "content": "", "tool_calls": call},
                                           {"role": "tool", "content": "23C", "tool_call_id": "call_1"}])
    assert (m2.seq, m3.seq, m2.tool_calls, m3.tool_call_id) == (2, 3, call, "call_1")
    conv = client.get_conversation(conv.id)
    assert conv.message_count == 3 and conv.total_tokens == m1.token_count + m2.token_count + m3.token_count
    page = client.get_messages(conv.id, 2)
    assert [m.seq for m in page.messages] == [2, 3] and page.has_more and page.next_before_seq == 2
    page = client.get_messages(conv.id, 2, page.next_before_seq)
    assert [m.seq for m in page.messages] == [1] and not page.has_more
    assert page.messages[0].conversation_id == conv.id
    assert [m.seq for m in client.all_messages(conv.id)] == [1, 2, 3]
    assert conv.id in [c.id for c in client.list_conversations(AGENT)]
    assert [c.id for c in client.find_conversations({"k": "v"})] == [conv.id]
    # the window is exactly what the SQL function returns
    window = client.build_context(conv.id, 1000, "Be brief.")
    assert isinstance(window, Window) and window.messages[0] == {"role": "system", "content": "Be brief."}
    assert window.token_count == client.count_message_tokens(window.messages, "o200k_base")
    with admin(client_db(client)) as a:
        raw = a.execute("SELECT memory.build_context(%s, 1000, 'Be brief.')", (conv.id,)).fetchone()[0]
    assert window.messages == raw["messages"] and window.token_count == raw["token_count"]
    assert client.build_context_from(window.messages[1:], 1000, "Be brief.", "o200k_base").messages == window.messages
    assert client.estimate_tokens("tiktoken is great!") == 6
    # idempotent appends and their conflicts
    again = client.add_message(conv.id, "user", "Book it.", idempotency_key="req-1")
    assert client.add_message(conv.id, "user", "Book it.", idempotency_key="req-1").id == again.id
    with pytest.raises(ConflictError) as e:
        client.add_message(conv.id, "user", "Something else", idempotency_key="req-1")
    assert e.value.sqlstate == "23505" and e.value.hint
    assert client.delete_message(again.id) and not client.delete_message(again.id)
    assert client.delete_conversation(conv.id) and not client.delete_conversation(conv.id)
    with pytest.raises(NotFoundError):
        client.get_conversation(conv.id)


def client_db(client):
    with client._pool.connection() as c:
        return c.info.dbname


def test_summaries_and_agents(client):
    agent = client.create_agent("helper", system_prompt="You help.", max_context_tokens=4000, reply_max_tokens=500,
                                temperature=0.3, tools=[])
    assert isinstance(agent, Agent) and agent.max_context_tokens == 4000 and abs(agent.temperature - 0.3) < 1e-6
    agent = client.update_agent(agent.id, reply_max_tokens=1000)
    assert agent.reply_max_tokens == 1000 and agent.system_prompt == "You help."
    assert client.get_agent(agent.id).name == "helper" and agent.id in [a.id for a in client.list_agents()]
    conv = client.create_conversation(agent.id)
    client.add_message(conv.id, "user", "hello " * 50)
    window = client.build_context(conv.id)
    assert window.max_tokens == 3000 and window.messages[0]["content"] == "You help."
    summary = client.add_summary(conv.id, 1, "The user said hello.", "by-hand")
    assert summary.covers_through_seq == 1 and summary.covered_tokens > 0
    assert [s.id for s in client.list_summaries(conv.id)] == [summary.id]
    job = client.request_summary(conv.id)
    status = client.summary_status(conv.id)
    assert status.summary.id == summary.id and status.job.id == job and status.job.status in ("queued", "running", "done")
    assert client.should_summarize(conv.id) is False
    assert client.delete_agent(agent.id)
    with pytest.raises(NotFoundError):
        client.get_agent(agent.id)


def test_export_import_fork_rewind(client):
    conv = client.create_conversation(AGENT, "history")
    client.add_messages(conv.id, [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                                  {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}])
    doc = client.export_conversation(conv.id)
    assert doc["version"] == 1 and [m["content"] for m in doc["messages"]] == ["q1", "a1", "q2", "a2"]
    assert client.export_conversation(conv.id, "openai")["messages"][0] == {"role": "user", "content": "q1"}
    markdown = client.export_conversation(conv.id, "markdown")
    assert isinstance(markdown, str) and markdown.startswith("# history")
    copy = client.import_conversation(doc, title="copy")
    assert client.get_conversation(copy).title == "copy" and len(client.all_messages(copy)) == 4
    with pytest.raises(InvalidInputError) as e:
        client.import_conversation([{"role": "user", "content": "ok"}, {"role": "robot", "content": "no"}])
    assert "message 1 of the import" in str(e.value)
    fork = client.fork_conversation(conv.id, 2, "branch")
    assert [m.content for m in client.all_messages(fork)] == ["q1", "a1"]
    assert client.get_conversation(fork).metadata["forked_from"]["at_seq"] == 2
    assert client.rewind_conversation(conv.id, 3) == 1
    assert [m.seq for m in client.all_messages(conv.id)] == [1, 2, 3]
    with pytest.raises(NotFoundError):
        client.as_user(new_user()).fork_conversation(conv.id)


def test_search(client):
    conv = client.create_conversation(AGENT, "search")
    client.add_messages(conv.id, [{"role": "user", "content": "Where is the quokka?"},
                                  {"role": "assistant", "content": "On Rottnest Island."}])
    page = client.search_messages("quokka")
    assert [r["seq"] for r in page["results"]] == [1] and "**quokka**" in page["results"][0]["snippet"]
    assert client.search_messages("island", role="user")["results"] == []
    assert client.as_user(new_user()).search_messages("quokka")["results"] == []


def test_templates_and_list_filters(client):
    conv = client.create_conversation(AGENT, "greeting", {"kind": "demo"})
    client.add_messages(conv.id, [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello"}])
    tpl = client.save_as_template(conv.id, "greeting")
    assert [t["name"] for t in client.list_templates()] == ["greeting"]
    started = client.create_conversation(None, "from template", template_id=tpl)
    assert started.agent_id == AGENT and started.message_count == 2
    assert [c.id for c in client.list_conversations(metadata={"kind": "demo"})] == [conv.id]
    assert [c.title for c in client.list_conversations(title="FROM TEMPL")] == ["from template"]
    first = client.list_conversations(limit=1)
    rest = client.list_conversations(limit=1000, updated_before=first[0].updated_at, before_id=first[0].id)
    assert first[0].id not in [c.id for c in rest] and len(rest) + 1 == len(client.list_conversations(limit=1000))
    assert client.delete_template(tpl) and client.list_templates() == []
    with pytest.raises(NotFoundError):
        client.create_conversation(None, template_id=tpl)


def test_branches_keep_what_an_edit_replaces(client):
    conv = client.create_conversation(AGENT, "branches")
    first, answer = client.add_messages(conv.id, [{"role": "user", "content": "Tea or coffee?"},
                                                  {"role": "assistant", "content": "Tea."}])
    edited = client.edit_message(first.id, "Coffee or tea?")
    assert edited.content == "Coffee or tea?" and edited.seq > answer.seq
    assert [m.content for m in client.all_messages(conv.id)] == ["Coffee or tea?"]
    branches = client.list_branches(conv.id)
    assert [(b["leaf_id"], b["active"]) for b in branches] == [(str(edited.id), True), (str(answer.id), False)]
    assert client.switch_branch(conv.id, answer.id)["restored"] == 2
    assert [m.content for m in client.all_messages(conv.id)] == ["Tea or coffee?", "Tea."]


def test_facts_are_the_callers_own(client):
    fact = client.add_fact("The user prefers window seats.")
    assert [f["content"] for f in client.list_facts()] == ["The user prefers window seats."]
    assert client.edit_fact(fact["id"], "The user prefers aisle seats.")["content"] == "The user prefers aisle seats."
    other = client.as_user(new_user())
    assert other.list_facts() == [] and other.delete_fact(fact["id"]) is False
    with pytest.raises(NotFoundError):
        other.edit_fact(fact["id"], "stolen")
    with pytest.raises(InvalidInputError):
        client.add_fact("x" * 1001)
    assert client.delete_fact(fact["id"]) is True and client.list_facts() == []


def test_sharing_share_links_and_archive(client, db):
    conv = client.create_conversation(AGENT, "shared")
    client.add_messages(conv.id, [{"role": "user", "content": "Where is the quokka?"},
                                  {"role": "assistant", "content": "On Rottnest Island."}])
    viewer, editor = new_user(), new_user()
    assert client.share_conversation(conv.id, viewer)["role"] == "viewer"
    client.share_conversation(conv.id, editor, "editor")
    assert [m["role"] for m in client.list_members(conv.id)] == ["owner", "viewer", "editor"]
    as_viewer, as_editor = client.as_user(viewer), client.as_user(editor)
    assert [(c.id, c.access) for c in as_viewer.list_conversations()] == [(conv.id, "viewer")]
    assert as_viewer.search_messages("quokka")["results"][0]["conversation_id"] == str(conv.id)
    with pytest.raises(PermissionDeniedError):
        as_viewer.add_message(conv.id, "user", "hello")
    assert as_editor.add_message(conv.id, "user", "and the wombat?").seq == 3
    with pytest.raises(PermissionDeniedError):
        as_editor.share_conversation(conv.id, new_user())
    token = client.create_share_link(conv.id, up_to_seq=2)
    shared = client.as_user(None).get_shared_conversation(token)
    assert [m["seq"] for m in shared["messages"]] == [1, 2]
    [link] = client.list_share_links(conv.id)
    assert client.revoke_share_link(link["id"]) is True
    with pytest.raises(NotFoundError):
        client.get_shared_conversation(token)
    assert client.unshare_conversation(conv.id, viewer) is True
    assert as_viewer.list_conversations() == []
    # ownership is offered to the editor, who accepts; the previous owner stays as an editor, and
    # takes it back the same way
    with pytest.raises(PermissionDeniedError):
        as_editor.transfer_conversation(conv.id, editor)
    me = str(client.current_user_id())
    assert str(client.transfer_conversation(conv.id, editor).user_id) == me
    [offer] = as_editor.list_transfer_offers()
    assert (offer["conversation_id"], str(offer["from_user_id"])) == (conv.id, me)
    assert as_editor.accept_transfer(conv.id).user_id == uuid.UUID(str(editor))
    assert (conv.id, "editor") in [(c.id, c.access) for c in client.list_conversations(limit=1000)]
    as_editor.transfer_conversation(conv.id, me)
    assert client.decline_transfer(conv.id) is True
    with pytest.raises(NotFoundError):
        client.accept_transfer(conv.id)
    as_editor.transfer_conversation(conv.id, me)
    assert str(client.accept_transfer(conv.id).user_id) == me
    assert client.unshare_conversation(conv.id, editor) is True
    # shares beyond the recipient's consent wait; it declines everything from one user at once
    bomber = client.as_user(new_user())
    for i in range(12):
        bomber.share_conversation(bomber.create_conversation(AGENT, f"b{i}").id, viewer)
    [pending] = as_viewer.list_share_offers()
    assert (str(pending["from_user_id"]), pending["offers"]) == (str(bomber.current_user_id()), 2)
    assert as_viewer.accept_shares(conversation_id=None, from_user_id=bomber.current_user_id()) == 2
    assert as_viewer.decline_shares(bomber.current_user_id()) == 12
    assert as_viewer.list_conversations() == []
    assert client.share_conversation(conv.id, editor, "editor")["role"] == "editor"
    assert client.archive_conversation(conv.id).archived_at is not None
    assert conv.id not in [c.id for c in client.list_conversations()]
    assert conv.id in [c.id for c in client.list_conversations(archived=None)]
    with pytest.raises(ArchivedError):
        as_editor.add_message(conv.id, "user", "still there?")
    assert client.unarchive_conversation(conv.id).archived_at is None
    with pytest.raises(PermissionDeniedError):
        client.erase_user(editor)


def test_errors_map_to_exceptions(client, db):
    conv = client.create_conversation(AGENT)
    with pytest.raises(InvalidInputError) as e:
        client.add_message(conv.id, "robot", "hi")
    assert e.value.sqlstate == "22023" and isinstance(e.value, ValueError)
    with pytest.raises(InvalidInputError):
        client.add_message("not-a-uuid", "user", "hi")
    with pytest.raises(InvalidInputError):
        client.get_messages(conv.id, 0)
    with pytest.raises(InvalidInputError) as e:
        client.add_message(conv.id, "user", None)
    assert e.value.sqlstate == "22004"
    with pytest.raises(InvalidInputError):
        client.create_agent("x", colour="blue")
    # someone else's conversation looks like no conversation
    other = client.as_user(new_user())
    with pytest.raises(NotFoundError):
        other.add_message(conv.id, "user", "let me in")
    assert other.all_messages(conv.id) == [] and client.all_messages(conv.id) == []
    with pytest.raises(ConflictError):
        other.ensure_conversation(conv.id, AGENT)
    # a per-user limit: PT429 with the retry time
    with admin(db) as a:
        a.execute(f"ALTER DATABASE {db} SET memory.max_messages_per_minute = 2")
    try:
        with MemoryClient(dsn(db), user_id=new_user()) as limited:
            c2 = limited.create_conversation(AGENT)
            limited.add_message(c2.id, "user", "one")
            limited.add_message(c2.id, "user", "two")
            with pytest.raises(LimitExceededError) as e:
                limited.add_message(c2.id, "user", "three")
            assert e.value.sqlstate == "PT429" and 0 < e.value.retry_after <= 60
            assert limited.get_conversation(c2.id).message_count == 2
    finally:
        with admin(db) as a:
            a.execute(f"ALTER DATABASE {db} RESET memory.max_messages_per_minute")


def test_transactions_are_atomic(client):
    conv = client.create_conversation(AGENT)
    with pytest.raises(InvalidInputError):
        with client.transaction() as tx:
            tx.add_message(conv.id, "user", "kept only if all succeed")
            tx.add_message(conv.id, "tool", "no call to answer", tool_call_id="nope")
    assert client.all_messages(conv.id) == []
    with pytest.raises(InvalidInputError):  # several calls in one run(): all or nothing too
        from memory_ext import calls
        client.run(calls.add_message(conv.id, "user", "a"), calls.add_message(conv.id, "bad", "b"))
    assert client.all_messages(conv.id) == []
    with client.transaction() as tx:
        tx.add_message(conv.id, "user", "a")
        tx.add_message(conv.id, "user", "b")
    assert [m.content for m in client.all_messages(conv.id)] == ["a", "b"]


def test_values_are_never_interpolated(client):
    conv = client.create_conversation(AGENT, "'); DROP TABLE memory.conversations; --")
    hostile = ["'); DROP TABLE memory.conversation_messages; --", "%s %(x)s {} {0}", "$1 $$ \\x00 ' \" ;"]
    for text in hostile:
        client.add_message(conv.id, "user", text, metadata={"q": text})
    assert [(m.content, m.metadata["q"]) for m in client.all_messages(conv.id)] == [(t, t) for t in hostile]
    assert client.get_conversation(conv.id).title.startswith("');")


def test_connection_sources_and_no_identity_leak(db):
    a, b = new_user(), new_user()
    with psycopg.connect(dsn(db), autocommit=True) as conn:
        ca = MemoryClient(conn, user_id=a)
        conv = ca.create_conversation(AGENT)
        # the identity was transaction-local: the connection itself has none afterwards
        assert conn.execute("SELECT memory.current_user_id()").fetchone()[0] is None
        assert MemoryClient(conn, user_id=b).all_messages(conv.id) == []
    with ConnectionPool(dsn(db), min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        pa, pb = MemoryClient(pool, user_id=a), MemoryClient(pool, user_id=b)
        pa.add_message(conv.id, "user", "from the pool")
        with pytest.raises(NotFoundError):
            pb.add_message(conv.id, "user", "not mine")
        with pool.connection() as c:
            assert c.execute("SELECT current_setting('memory.user_id', true)").fetchone()[0] in (None, "")
        assert [m.content for m in pa.as_user(a).all_messages(conv.id)] == ["from the pool"]


def test_a_connection_inside_the_applications_transaction_is_refused(db):
    """Inside the application's own transaction the client's transaction-local identity would
    outlive the call (a savepoint does not end it) and apply to the application's next
    statements: such a connection is refused, and nothing of the identity is left behind."""
    victim = new_user()
    for autocommit in (False, True):
        with psycopg.connect(dsn(db, "app"), autocommit=autocommit) as conn:
            if autocommit:
                conn.execute("BEGIN")
            else:
                conn.execute("SELECT 1")  # psycopg opened a transaction
            with pytest.raises(ConnectionInTransactionError) as e:
                MemoryClient(conn, user_id=victim).create_conversation(AGENT)
            assert e.value.sqlstate == "25001" and e.value.hint
            with pytest.raises(ConnectionInTransactionError):
                with MemoryClient(conn, user_id=victim).transaction():
                    pass
            # the application's next statement runs as nobody
            assert conn.execute("SELECT memory.current_user_id()").fetchone()[0] is None
            conn.rollback()
            # once idle, the same connection is served
            if not autocommit:
                conn.autocommit = True
            assert MemoryClient(conn, user_id=victim).create_conversation(AGENT).user_id == uuid.UUID(victim)


def test_concurrent_appends_from_threads(db):
    with MemoryClient(dsn(db), user_id=new_user(), max_connections=4) as c:
        conv = c.create_conversation(AGENT)

        def writer(w):
            for i in range(10):
                c.add_message(conv.id, "user", f"w{w} m{i}")
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert [m.seq for m in c.all_messages(conv.id)] == list(range(1, 41))


def test_chat_turns(cluster, fake):
    # the worker of this cluster serves database postgres: chat, tool calls, reply jobs there
    with MemoryClient(dsn("postgres"), user_id=new_user()) as c:
        clock = [{"type": "function", "function": {"name": "clock", "parameters": {"type": "object", "properties": {}}}}]
        agent = c.create_agent("bot", system_prompt="Be short.", tools=clock)
        conv = c.create_conversation(agent.id)
        turn = c.chat(conv.id, "Hello there")
        assert isinstance(turn, ChatResult) and turn.message.content == "You said: Hello there"
        assert turn.message.conversation_id == conv.id and turn.usage["total_tokens"] > 0 and turn.agent_id == agent.id
        turn = c.chat(conv.id, "What time is it?")
        assert turn.finish_reason == "tool_calls" and turn.message.tool_calls[0]["function"]["name"] == "clock"
        c.add_message(conv.id, "tool", "12:00", tool_call_id=turn.message.tool_calls[0]["id"])
        assert c.continue_chat(conv.id).message.content == "The tool said: 12:00"
        assert len(c.llm_calls(conv.id)) == 3
        fake.mode = "500"
        with pytest.raises(LLMError) as e:
            c.chat(conv.id, "fails")
        assert e.value.sqlstate == "PT502"
        fake.mode = "429"
        with pytest.raises(LimitExceededError) as e:
            c.chat(conv.id, "slow down")
        assert e.value.retry_after == fake.retry_after
        assert c.get_conversation(conv.id).message_count == 6  # the failed turns wrote nothing
        fake.mode = "ok"
        c.add_message(conv.id, "user", "answer me later")
        job = c.request_reply(conv.id)
        done = wait_for(lambda: (s := c.reply_status(job)).status == "done" and s)
        replies = c.all_messages(conv.id)
        assert done.message_id == replies[-1].id and replies[-1].content == "You said: answer me later"
