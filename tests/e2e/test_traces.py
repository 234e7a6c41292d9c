"""Traces, end to end: with memory.otlp_endpoint set, memory.chat and the worker send a span per
LLM call (GenAI semantic conventions plus memory_ext's own attributes) and per job (the call's
parent) to a stand-in OTLP/HTTP collector on 127.0.0.1; no content unless memory.otlp_content is
on; failures are error spans; a slow or absent collector never holds up a turn; only a superuser
sets where traces go."""
import json
import os
import time

import psycopg
import pytest

from support.fake_collector import FakeCollector
from support.pg import TEST_ROOT, app_session, fetch_on, llm_cluster, reload_setting, wait_for

SECRET = "my passport number is X1234567"


@pytest.fixture(scope="module")
def collector():
    c = FakeCollector()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def pg(cluster, llm, collector):
    settings = {"memory.llm_base_url": f"http://127.0.0.1:{llm.port}/v1", "memory.llm_model": "fake-model",
                "memory.llm_timeout": 1500, "memory.retry_backoff": 200, "memory.max_attempts": 2,
                "memory.worker_naptime": 50, "memory.user_id_roles": "app", "memory.llm_api_key": "sk-traces",
                "memory.summary_keep_tokens": 40, "memory.summary_max_tokens": 77,
                "memory.otlp_endpoint": f"http://127.0.0.1:{collector.port}"}
    with llm_cluster("traces", cluster + 13, settings) as port:
        yield port


@pytest.fixture(autouse=True)
def defaults(pg, llm, collector):
    llm.mode, llm.delay = "ok", 0.0
    collector.delay, collector.status = 0.0, 200
    yield
    reload_setting(pg, "memory.otlp_content", "off")
    reload_setting(pg, "memory.otlp_endpoint", f"http://127.0.0.1:{collector.port}")





def new_chat(c):
    agent = c.execute("SELECT (memory.create_agent('helper', 'You are helpful.', auto_reply => false)).id").fetchone()[0]
    return agent, c.execute("SELECT (memory.create_conversation(%s)).id", (agent,)).fetchone()[0]


def chat_span(collector, cid):
    spans = wait_for(lambda: collector.find(**{"memory.conversation.id": str(cid), "memory.call.kind": "chat"}))
    assert len(spans) == 1, spans
    return spans[0]


def test_a_chat_turn_sends_a_genai_span_without_content(pg, llm, collector):
    with app_session(pg) as c:
        agent, cid = new_chat(c)
        c.execute("SELECT memory.chat(%s, %s)", (cid, SECRET))
    span = chat_span(collector, cid)
    call = fetch_on(pg, "SELECT prompt_tokens, completion_tokens, local_prompt_tokens FROM memory.llm_calls WHERE conversation_id = %s", cid)
    a = span["attributes"]
    assert span["name"] == "chat fake-model" and span["kind"] == 3 and span["status"]["code"] == 1
    assert "parentSpanId" not in span and len(span["traceId"]) == 32 and len(span["spanId"]) == 16
    assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"]) > (time.time() - 600) * 1e9
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "fake-model" and a["gen_ai.response.model"] == "fake-model"
    assert a["gen_ai.response.finish_reasons"] == ["stop"] and a["gen_ai.response.id"].startswith("chatcmpl-")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"], a["memory.window.tokens"]) == call
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == llm.port
    assert a["memory.agent.id"] == str(agent) and a["memory.summary.used"] is False
    assert span["resource"] == {"service.name": "memory_ext"} and span["scope"] == "memory_ext"
    # no content: neither the user's words nor the answer are anywhere in what was sent
    sent = b"".join(r["body"] for r in collector.requests)
    assert SECRET.encode() not in sent and b"You said" not in sent
    assert all(r["path"] == "/v1/traces" and r["content_type"] == "application/json" for r in collector.requests)


def test_content_goes_in_only_when_the_operator_turns_it_on(pg, collector):
    reload_setting(pg, "memory.otlp_content", "on")
    with app_session(pg) as c:
        _, cid = new_chat(c)
        c.execute("SELECT memory.chat(%s, %s)", (cid, SECRET))
        a = chat_span(collector, cid)["attributes"]
        assert SECRET in json.dumps(json.loads(a["gen_ai.input.messages"]))
        assert f"You said: {SECRET}" in a["gen_ai.output.messages"]
        # a user cannot turn it on (or point traces elsewhere) for their own session
        for name in ("memory.otlp_content", "memory.otlp_endpoint"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(f"SET {name} = 'on'")


def test_a_job_is_a_span_and_its_llm_call_a_child_of_it(pg, collector):
    with app_session(pg) as c:
        _, cid = new_chat(c)
        for i in range(6):
            c.execute("SELECT memory.add_message(%s, %s, %s)", (cid, "user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * 60))
        job = c.execute("SELECT memory.request_summary(%s)", (cid,)).fetchone()[0]
    jobs = wait_for(lambda: collector.find(**{"memory.job.id": job, "memory.job.outcome": "done"}))
    calls = wait_for(lambda: collector.find(**{"memory.job.id": job, "memory.call.kind": "summary"}))
    assert len(jobs) == 1 and len(calls) == 1
    job_span, call = jobs[0], calls[0]
    assert job_span["name"] == "memory.job summary" and job_span["kind"] == 1 and "parentSpanId" not in job_span
    assert call["name"] == "chat fake-model" and call["kind"] == 3
    assert call["traceId"] == job_span["traceId"] and call["parentSpanId"] == job_span["spanId"]
    assert int(job_span["startTimeUnixNano"]) <= int(call["startTimeUnixNano"]) <= int(call["endTimeUnixNano"]) <= int(job_span["endTimeUnixNano"])
    row = fetch_on(pg, "SELECT id, prompt_tokens, completion_tokens FROM memory.llm_calls WHERE job_id = %s", job)
    assert (call["attributes"]["memory.llm_call.id"], call["attributes"]["gen_ai.usage.input_tokens"],
            call["attributes"]["gen_ai.usage.output_tokens"]) == row
    assert call["attributes"]["memory.conversation.id"] == str(cid) == job_span["attributes"]["memory.conversation.id"]
    assert job_span["attributes"]["memory.job.attempt"] == 1


def test_failures_are_error_spans(pg, llm, collector):
    llm.mode = "500"
    with app_session(pg) as c:
        _, cid = new_chat(c)
        with pytest.raises(psycopg.Error):
            c.execute("SELECT memory.chat(%s, 'hello')", (cid,))
        span = chat_span(collector, cid)
        assert span["status"] == {"code": 2, "message": "failed: 500"}
        assert span["attributes"]["error.type"] == "500" and "gen_ai.usage.input_tokens" not in span["attributes"]
        # a reply job that fails: its span and its call's span say so
        c.execute("SELECT memory.add_message(%s, 'user', 'anyone there?')", (cid,))
        job = c.execute("SELECT memory.request_reply(%s)", (cid,)).fetchone()[0]
    failed = wait_for(lambda: collector.find(**{"memory.job.id": job, "memory.job.outcome": "error"}))
    assert failed[0]["status"]["code"] == 2 and failed[0]["attributes"]["error.type"] == "500"
    assert wait_for(lambda: collector.find(**{"memory.job.id": job, "memory.call.kind": "reply", "error.type": "500"}))


def test_a_slow_or_absent_collector_never_holds_up_a_turn(pg, collector):
    collector.delay = 8.0
    with app_session(pg) as c:
        _, cid = new_chat(c)
        started = time.monotonic()
        c.execute("SELECT memory.chat(%s, 'quick, please')", (cid,))
        assert time.monotonic() - started < 4, "the turn waited for the collector"
        assert c.execute("SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", (cid,)).fetchone()[0] == 2
    collector.delay = 0.0
    # nothing listens: turns and jobs go on, and the worker says why traces are missing
    reload_setting(pg, "memory.otlp_endpoint", "http://127.0.0.1:9")
    with app_session(pg) as c:
        _, cid = new_chat(c)
        c.execute("SELECT memory.chat(%s, 'still here')", (cid,))
        c.execute("SELECT memory.add_message(%s, 'user', 'and a reply job')", (cid,))
        job = c.execute("SELECT memory.request_reply(%s)", (cid,)).fetchone()[0]
    wait_for(lambda: fetch_on(pg, "SELECT status FROM memory.jobs WHERE id = %s", job)[0] == "done")
    log = os.path.join(TEST_ROOT, "traces", "server.log")
    wait_for(lambda: "sending traces to 127.0.0.1:9 failed" in open(log).read())
