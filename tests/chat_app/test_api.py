"""The reference chat app's HTTP API, over real HTTP: authentication, another user's data, bad
input, limits, LLM failures (nothing written), and what the client and the log never see."""
import json
import time
import urllib.error
import urllib.request
import uuid

import jwt
import pytest
from conftest import SECRET, admin, auth, wait_for


def user():
    return f"api-{uuid.uuid4().hex[:8]}"


def turn(app, name, message, conversation_id=None):
    body = {"message": message}
    if conversation_id:
        body["conversation_id"] = conversation_id
    return app.request("POST", "/agent/chat", body, name=name)


def test_every_endpoint_needs_a_valid_token(app):
    now = int(time.time())
    good = {"sub": auth.demo_user_id("x"), "role": "authenticated", "aud": "authenticated", "exp": now + 60}
    bad_tokens = {
        "none": None,
        "other secret": jwt.encode(good, "another-secret-" + "x" * 32, algorithm="HS256"),
        "expired": jwt.encode({**good, "exp": now - 10}, SECRET, algorithm="HS256"),
        "no expiry": jwt.encode({k: v for k, v in good.items() if k != "exp"}, SECRET, algorithm="HS256"),
        "service role": jwt.encode({**good, "role": "service_role"}, SECRET, algorithm="HS256"),
        "subject not a user id": jwt.encode({**good, "sub": "admin"}, SECRET, algorithm="HS256"),
        "alg none": jwt.encode(good, None, algorithm="none"),
    }
    for what, token in bad_tokens.items():
        for method, path in (("GET", "/conversations"), ("POST", "/agent/chat"), ("GET", "/me"),
                             ("GET", f"/conversations/{uuid.uuid4()}/messages")):
            status, headers, body = app.request(method, path, {"message": "hi"} if method == "POST" else None,
                                                token=token)
            assert status == 401, (what, path, status, body)
            assert headers.get("www-authenticate") == "Bearer"


def test_chat_turn_shapes(app):
    name = user()
    status, _, t = turn(app, name, "hello")
    assert status == 200
    assert [(m["seq"], m["role"], m["content"]) for m in t["messages"]] == [(1, "user", "hello"),
                                                                              (2, "assistant", "You said: hello")]
    assert t["usage"]["total_tokens"] > 0 and t["finish_reason"] == "stop"
    assert t["context"]["token_count"] > 0 and t["context"]["max_tokens"] > t["context"]["token_count"]
    status, _, t2 = turn(app, name, "what time is it?", t["conversation_id"])
    roles = [m["role"] for m in t2["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert t2["messages"][1]["tool_calls"][0]["function"]["name"] == "clock"
    assert t2["messages"][2]["tool_call_id"] == t2["messages"][1]["tool_calls"][0]["id"]
    status, _, page = app.request("GET", f"/conversations/{t['conversation_id']}/messages?limit=3", name=name)
    assert status == 200 and [m["seq"] for m in page["messages"]] == [4, 5, 6]
    assert page["has_more"] and page["next_before"] == 4
    status, _, older = app.request("GET", f"/conversations/{t['conversation_id']}/messages?before=4", name=name)
    assert [m["seq"] for m in older["messages"]] == [1, 2, 3] and not older["has_more"]
    status, headers, md = app.request("GET", f"/conversations/{t['conversation_id']}/export?format=markdown", name=name)
    assert status == 200 and "what time is it?" in md and headers["content-type"].startswith("text/markdown")
    status, _, hits = app.request("GET", "/search?q=time", name=name)
    assert [h["seq"] for h in hits["results"]] == [3]


def test_another_users_conversation_is_404_everywhere(app):
    owner, other = user(), user()
    cid = turn(app, owner, "mine")[2]["conversation_id"]
    for method, path, body in (("GET", f"/conversations/{cid}/messages", None),
                               ("GET", f"/conversations/{cid}/context", None),
                               ("GET", f"/conversations/{cid}/export", None),
                               ("GET", f"/conversations/{cid}/export?format=pdf", None),
                               ("POST", f"/conversations/{cid}/summarize", None),
                               ("DELETE", f"/conversations/{cid}", None),
                               ("PATCH", f"/conversations/{cid}", {"title": "taken over"}),
                               ("GET", f"/conversations/{cid}/summary", None),
                               ("POST", f"/conversations/{cid}/regenerate", None),
                               ("POST", "/agent/chat", {"message": "let me in", "conversation_id": cid})):
        status, _, resp = app.request(method, path, body, name=other)
        assert status == 404, (method, path, status, resp)
    status, _, page = app.request("GET", f"/conversations/{cid}/messages", name=owner)
    assert [m["content"] for m in page["messages"]] == ["mine", "You said: mine"], "nothing was added or removed"
    assert page["conversation"]["title"] == "mine"


def test_rename_summary_and_regenerate(app, fake, database):
    name = user()
    status, _, conversation = app.request("POST", "/conversations", {}, name=name)
    cid = conversation["id"]
    # nothing to answer again yet: 409, and nothing written
    status, _, body = app.request("POST", f"/conversations/{cid}/regenerate", name=name)
    assert status == 409 and body["error"] == "there is no user message to answer again"
    assert app.request("GET", f"/conversations/{cid}/summary", name=name)[2] == {"summary": None, "job": None}
    for bad in ({"title": ""}, {"title": "x" * 201}, {}):
        assert app.request("PATCH", f"/conversations/{cid}", bad, name=name)[0] == 422
    status, _, renamed = app.request("PATCH", f"/conversations/{cid}", {"title": "  My chat "}, name=name)
    assert status == 200 and renamed["title"] == "My chat"

    turn(app, name, "again?", cid)
    old = app.request("GET", f"/conversations/{cid}/messages", name=name)[2]["messages"]
    status, _, regenerated = app.request("POST", f"/conversations/{cid}/regenerate", name=name)
    assert status == 200 and [m["role"] for m in regenerated["messages"]] == ["assistant"]
    now = app.request("GET", f"/conversations/{cid}/messages", name=name)[2]["messages"]
    assert [m["content"] for m in now] == ["again?", "You said: again?"] and now[1]["id"] != old[1]["id"]
    # the old answer is kept as an inactive branch, not deleted
    with admin(database) as c:
        kept = c.execute("SELECT id::text FROM memory.branch_messages WHERE conversation_id = %s", (cid,)).fetchall()
    assert kept == [(old[1]["id"],)]
    # a failed regeneration keeps the answer there was
    fake.mode = "500"
    assert app.request("POST", f"/conversations/{cid}/regenerate", name=name)[0] == 502
    assert app.request("GET", f"/conversations/{cid}/messages", name=name)[2]["messages"] == now
    fake.mode = "ok"

    # a failed summary job is reported by state and attempts, never by its error text (a history
    # long enough to summarize, appended as the user)
    fake.mode = "500"
    with admin(database) as c:
        c.execute("SELECT set_config('request.jwt.claims', %s, false)",
                  (f'{{"sub": "{auth.demo_user_id(name)}", "role": "authenticated"}}',))
        for i in range(30):
            c.execute("SELECT memory.add_message(%s, %s, %s)", (cid, "user" if i % 2 == 0 else "assistant", "lorem ipsum " * 60))
    assert app.request("POST", f"/conversations/{cid}/summarize", name=name)[0] == 202

    def failed():
        job = app.request("GET", f"/conversations/{cid}/summary", name=name)[2]["job"]
        return job if job and job["status"] == "failed" else None
    job = wait_for(failed, timeout=30, step=0.3)
    assert set(job) == {"status", "attempts"} and job["attempts"] == 2
    fake.mode = "ok"
    assert app.request("POST", f"/conversations/{cid}/summarize", name=name)[0] == 202
    done = wait_for(lambda: app.request("GET", f"/conversations/{cid}/summary", name=name)[2]["summary"], timeout=30, step=0.3)
    assert done["content"].startswith("SUMMARY #") and done["covers_through_seq"] > 2


def test_bad_input_is_422_and_writes_nothing(app, database):
    name = user()
    cid = turn(app, name, "start")[2]["conversation_id"]
    cases = [("POST", "/agent/chat", {"message": ""}),
             ("POST", "/agent/chat", {"message": "x" * 8001}),
             ("POST", "/agent/chat", {"message": 42}),
             ("POST", "/agent/chat", {"message": "hi", "conversation_id": "not-a-uuid"}),
             ("POST", "/conversations", {"title": "t" * 201}),
             ("GET", "/conversations/not-a-uuid/messages", None),
             ("GET", f"/conversations/{cid}/messages?before=0", None),
             ("GET", f"/conversations/{cid}/messages?limit=1000", None),
             ("GET", "/conversations?cursor=bm90LWEtY3Vyc29y", None),
             ("GET", f"/conversations/{cid}/export?format=html", None),
             ("GET", "/search?q=", None)]
    for method, path, body in cases:
        status, _, resp = app.request(method, path, body, name=name)
        assert status == 422, (path, body, status, resp)
        assert "Traceback" not in str(resp)
    with admin(database) as c:
        count = c.execute("SELECT message_count FROM memory.conversations WHERE id = %s", (cid,)).fetchone()[0]
        conversations = c.execute("SELECT count(*) FROM memory.conversations WHERE user_id = %s",
                                  (auth.demo_user_id(name),)).fetchone()[0]
    assert (count, conversations) == (2, 1)


@pytest.mark.parametrize("mode,status", [("500", 502), ("badjson", 502), ("refuse", 422)])
def test_llm_failures_write_nothing(app, fake, database, mode, status):
    name = user()
    cid = turn(app, name, "before")[2]["conversation_id"]
    fake.mode = mode
    got, _, body = turn(app, name, "during the outage", cid)
    assert got == status and body["error"]
    assert "Traceback" not in str(body) and "sk-chat-app-tests" not in str(body)
    # no internal text: not the LLM's address, not the database's message
    assert "127.0.0.1" not in str(body) and "HTTP 500" not in str(body) and "invalid JSON" not in str(body)
    fake.mode = "ok"
    _, _, page = app.request("GET", f"/conversations/{cid}/messages", name=name)
    assert [m["content"] for m in page["messages"]] == ["before", "You said: before"], "the failed turn left nothing"
    assert turn(app, name, "after", cid)[0] == 200


def test_a_tool_round_that_fails_leaves_no_dangling_call(app, fake):
    name = user()
    cid = turn(app, name, "hi")[2]["conversation_id"]
    first = len(fake.requests)
    fake.ok_requests_left = 1  # the model's tool call arrives; its answer after the tool result fails
    status, _, _ = turn(app, name, "what time is it?", cid)
    assert status == 502
    assert [r["json"]["messages"][-1]["role"] for r in fake.requests[first:]] == ["user", "tool"]
    _, _, page = app.request("GET", f"/conversations/{cid}/messages", name=name)
    assert [m["role"] for m in page["messages"]] == ["user", "assistant"], "the turn is all or nothing"


def test_over_the_message_limit_is_429_with_retry_after(app, database):
    name = user()
    with admin(database) as c:
        c.execute("ALTER SYSTEM SET memory.max_messages_per_minute = 2")
        c.execute("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)
        cid = turn(app, name, "one")[2]["conversation_id"]
        assert turn(app, name, "two", cid)[0] == 200
        status, headers, body = turn(app, name, "three", cid)
        assert status == 429 and int(headers["retry-after"]) >= 1 and body["hint"]
    finally:
        with admin(database) as c:
            c.execute("ALTER SYSTEM RESET memory.max_messages_per_minute")
            c.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
    _, _, page = app.request("GET", f"/conversations/{cid}/messages", name=name)
    assert len(page["messages"]) == 4


def test_the_log_holds_no_token_and_no_content(app):
    name = user()
    token = app.token(name)
    secret_text = f"my card number is {uuid.uuid4().hex}"
    turn(app, name, secret_text)
    app.request("GET", f"/conversations/{uuid.uuid4()}/messages", token=token)  # a 404 is logged
    app.request("GET", "/conversations", token=token + "x")                       # a 401
    log = app.log()
    assert "P0002" in log, "errors are logged (path and SQLSTATE)"
    assert token not in log and secret_text not in log and SECRET not in log


def test_the_app_connects_as_a_login_that_can_do_nothing_by_itself(database):
    import psycopg
    from conftest import support
    with psycopg.connect(support.dsn("chat", user="chat_app", port=database), autocommit=True) as c:
        # no identity: memory_ext refuses; the table shows nothing without a user's claims
        assert c.execute("SELECT rolinherit FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT memory.create_conversation(gen_random_uuid())")


def test_every_response_carries_the_security_headers(app):
    name = user()
    for method, path in (("GET", "/"), ("GET", "/static/app.js"), ("GET", "/conversations"), ("GET", "/nowhere")):
        status, headers, _ = app.request(method, path, name=name)
        csp = headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, (path, headers)
        assert headers.get("x-content-type-options") == "nosniff", path
        assert headers.get("x-frame-options") == "DENY", path


def test_sharing_endpoints_refuse_bad_input_and_strangers(app):
    owner, stranger = user(), user()
    cid = turn(app, owner, "shared later")[2]["conversation_id"]
    assert app.request("POST", f"/conversations/{cid}/members", {"user": "x", "role": "owner"}, name=owner)[0] == 422
    assert app.request("POST", f"/conversations/{cid}/members", {"user": ""}, name=owner)[0] == 422
    for method, path, body in (("GET", f"/conversations/{cid}/members", None),
                               ("POST", f"/conversations/{cid}/members", {"user": "mallory"}),
                               ("GET", f"/conversations/{cid}/links", None),
                               ("POST", f"/conversations/{cid}/links", None)):
        status, _, resp = app.request(method, path, body, name=stranger)
        assert status in (403, 404), (method, path, status, resp)
    assert app.request("DELETE", f"/links/{uuid.uuid4()}", name=stranger)[0] == 404
    assert app.request("DELETE", f"/conversations/{cid}/members/{uuid.uuid4()}", name=owner)[0] == 404
    # a link: read-only, the title and the messages only; a wrong token is a 404 for anyone
    status, _, created = app.request("POST", f"/conversations/{cid}/links", name=owner)
    assert status == 201
    status, _, shared = app.request("POST", "/shared", {"token": created["token"]})
    assert status == 200 and shared["title"] == "shared later"
    assert [m["content"] for m in shared["messages"]] == ["shared later", "You said: shared later"]
    assert set(shared["messages"][0]) == {"id", "seq", "role", "content", "tool_calls", "tool_call_id", "created_at", "token_count"}
    assert app.request("POST", "/shared", {"token": created["token"] + "x"})[0] == 404
    assert app.request("POST", "/shared", {"token": ""})[0] == 422


def test_voice_endpoints_refuse_bad_input_and_hide_provider_failures(app, fake):
    name = user()
    wav = b"RIFF" + b"\0" * 2000

    assert _raw(app, wav, "audio/wav", None, "not-a-token")[0] == 401
    assert _raw(app, wav, "text/plain", name)[0] == 415
    assert _raw(app, b"", "audio/wav", name)[0] == 422
    assert _raw(app, b"\0" * (10 * 1024 * 1024 + 1), "audio/webm", name)[0] == 413
    status, _, body = _raw(app, wav, "audio/wav", name)
    assert status == 200 and body == {"text": f"stand-in transcription of {len(wav)} bytes of audio/wav"}
    assert app.request("POST", "/voice/speech", {"text": ""}, name=name)[0] == 422
    assert app.request("POST", "/voice/speech", {"text": "x" * 4001}, name=name)[0] == 422
    fake.mode = "500"
    status, _, body = _raw(app, wav, "audio/wav", name)
    assert status == 502 and "127.0.0.1" not in str(body)
    assert app.request("POST", "/voice/speech", {"text": "hello"}, name=name)[0] == 502
    fake.mode = "ok"
    assert "sk-audio-tests" not in app.log(), "the provider's key never reaches the log"


def _raw(app, data, content_type, name, token=None):
    """A request with a raw body (a recording), as the page sends it."""
    req = urllib.request.Request(app.url + "/voice/transcribe", data=data, method="POST", headers={
        "Content-Type": content_type, "Authorization": f"Bearer {token or app.token(name)}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null")
