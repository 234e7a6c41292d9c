"""Cost in money, end to end against the fake OpenAI-compatible server: the operator's prices
(memory.model_prices, the seed, bad input), each LLM call's cost at the price in force when it was
made (memory.chat, the worker's summaries, unpriced models), the figures per day, agent and
conversation under RLS, and the daily cost limit (memory.max_llm_cost_per_day), rolled-back turns
included."""
import uuid
from decimal import Decimal

import psycopg
import pytest

from support.pg import admin_on, app_session, fetch_on, llm_cluster, reload_setting, wait_for

MODEL = "fake-model"


@pytest.fixture(scope="module")
def pg(cluster, llm):
    settings = {"memory.llm_base_url": f"http://127.0.0.1:{llm.port}/v1", "memory.llm_model": MODEL,
                "memory.llm_timeout": 1500, "memory.retry_backoff": 200, "memory.max_attempts": 2,
                "memory.worker_naptime": 50, "memory.user_id_roles": "app",
                # with a key, summaries call the LLM too (without one they are extractive: no call)
                "memory.llm_api_key": "sk-cost-test", "memory.summary_keep_tokens": 40, "memory.summary_max_tokens": 77}
    with llm_cluster("cost", cluster + 12, settings) as port:
        yield port


@pytest.fixture(autouse=True)
def fresh_prices(pg, llm):
    """Each test starts with no prices and no limit, the stand-in answering."""
    llm.mode, llm.delay = "ok", 0.0
    with admin_on(pg) as c:
        c.execute("DELETE FROM memory.model_prices")
    yield
    reload_setting(pg, "memory.max_llm_cost_per_day", 0)






def one(c, sql, *args):
    return c.execute(sql, args).fetchone()[0]


def price(port, model, input_usd, output_usd, valid_from="-infinity", valid_to="infinity"):
    with admin_on(port) as c:
        c.execute("INSERT INTO memory.model_prices (model, input_usd_per_million, output_usd_per_million, valid_from, valid_to)"
                  " VALUES (%s, %s, %s, %s, %s)", (model, input_usd, output_usd, valid_from, valid_to))


def new_chat(c, model=None):
    agent = one(c, "SELECT (memory.create_agent('helper', 'You are helpful.', model => %s)).id", model)
    return agent, one(c, "SELECT (memory.create_conversation(%s)).id", agent)


def expected(row, input_usd, output_usd):
    """A call's cost from its billed tokens, in exact decimals."""
    prompt, completion = row
    return (Decimal(input_usd) * prompt + Decimal(output_usd) * completion) / 1_000_000


def test_prices_are_the_operators_and_everyone_reads_them(pg):
    """Users read the prices and cannot write them (nor run the seed); the seed adds the common
    models once and never replaces a price the operator set."""
    price(pg, "gpt-4o", "3.00", "9.00")
    with app_session(pg) as c:
        assert one(c, "SELECT input_usd_per_million FROM memory.model_prices WHERE model = 'gpt-4o'") == Decimal("3.00")
        for sql in ("INSERT INTO memory.model_prices VALUES ('mine', 0, 0)",
                    "UPDATE memory.model_prices SET input_usd_per_million = 0",
                    "DELETE FROM memory.model_prices",
                    "SELECT memory.seed_model_prices()"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql)
    with admin_on(pg) as c:
        added = one(c, "SELECT memory.seed_model_prices()")
        assert added >= 10
        assert one(c, "SELECT memory.seed_model_prices()") == 0
        assert one(c, "SELECT count(*) FROM memory.model_prices") == added + 1
        # the operator's own price of gpt-4o stays; the seed priced the others
        assert c.execute("SELECT input_usd_per_million, output_usd_per_million, source FROM memory.model_prices"
                         " WHERE model = 'gpt-4o'").fetchall() == [(Decimal("3.00"), Decimal("9.00"), None)]
        assert one(c, "SELECT source FROM memory.model_prices WHERE model = 'llama-3.3-70b-versatile'") == "Groq price list, 2025-08"


@pytest.mark.parametrize("values, sqlstate", [
    (("m", "-1", "1", "-infinity", "infinity"), "23514"),       # a negative price
    (("m", "1", "-0.01", "-infinity", "infinity"), "23514"),
    (("", "1", "1", "-infinity", "infinity"), "23514"),          # no model name
    (("m", "1", "1", "2026-02-01", "2026-01-01"), "23514"),      # a period that ends before it starts
    (("m", "1", "1", "2026-01-01", "2026-01-01"), "23514"),      # an empty period
    (("m", "1", "1", "2026-03-01", "2026-09-01"), "23P01"),      # overlaps the price from 2026-01-01 to 2026-06-01
    (("m", "1", "1", "2025-01-01", "infinity"), "23P01"),        # contains it
    (("m", "1", "1", "2026-01-01", "2026-02-01"), "23505"),      # the same start twice
])
def test_bad_prices_are_refused_and_change_nothing(pg, values, sqlstate):
    price(pg, "m", "2", "4", "2026-01-01", "2026-06-01")
    with pytest.raises(psycopg.Error) as err:
        price(pg, *values)
    assert err.value.sqlstate == sqlstate, err.value
    assert fetch_on(pg, "SELECT count(*), min(input_usd_per_million) FROM memory.model_prices") == (1, Decimal("2"))
    # periods that only touch are fine, and so is another model's overlapping period
    price(pg, "m", "1", "1", "2026-06-01", "infinity")
    price(pg, "other", "1", "1", "2026-03-01", "2026-09-01")
    # moving a period onto another is refused the same way
    with pytest.raises(psycopg.errors.ExclusionViolation):
        with admin_on(pg) as c:
            c.execute("UPDATE memory.model_prices SET valid_to = '2026-07-01' WHERE model = 'm' AND valid_from = '2026-01-01'")


def test_each_call_costs_its_tokens_at_the_price_in_force_when_it_was_made(pg, llm):
    """memory.chat's call costs the provider's prompt and completion tokens at the price of its
    model at that time; a new price applies to later calls only; a model without a price costs
    NULL (unknown, not free). The day's cost per user follows the calls."""
    price(pg, MODEL, "2.50", "10.00")
    uid = str(uuid.uuid4())
    with app_session(pg, uid) as c:
        _, cid = new_chat(c)
        c.execute("SELECT memory.chat(%s, 'What does memory_ext cost?')", (cid,))
        first = fetch_on(pg, "SELECT id, prompt_tokens, completion_tokens, cost_usd FROM memory.llm_calls WHERE conversation_id = %s", cid)
        assert first[1] > 0 and first[2] > 0
        assert first[3] == expected(first[1:3], "2.50", "10.00")
        # the operator ends that price and sets a new one from now on
        with admin_on(pg) as a:
            a.execute("UPDATE memory.model_prices SET valid_to = now() WHERE model = %s", (MODEL,))
            a.execute("INSERT INTO memory.model_prices VALUES (%s, 100, 200, now(), 'infinity', 'test')", (MODEL,))
        c.execute("SELECT memory.chat(%s, 'And now?')", (cid,))
        rows = c.execute("SELECT id, prompt_tokens, completion_tokens, cost_usd FROM memory.llm_calls"
                         " WHERE conversation_id = %s ORDER BY id", (cid,)).fetchall()
        assert rows[0] == first, "a new price changed a call already made"
        assert rows[1][3] == expected(rows[1][1:3], "100", "200")
        # a model nobody priced
        _, unpriced = new_chat(c, model="unpriced-model")
        c.execute("SELECT memory.chat(%s, 'hello')", (unpriced,))
        assert one(c, "SELECT cost_usd IS NULL FROM memory.llm_calls WHERE conversation_id = %s", unpriced)
    total = rows[0][3] + rows[1][3]
    assert fetch_on(pg, "SELECT day_cost_usd FROM memory.user_usage WHERE user_id = %s", uid)[0] == total


def test_the_workers_calls_are_priced_when_the_provider_reports(pg, llm):
    """A summary job's call is written as pending before the call (priced at its locally counted
    prompt) and completed with the provider's figures: its cost then is the reported tokens at
    the model's price, and the user's day counts the difference, not both."""
    price(pg, MODEL, "1.00", "3.00")
    uid = str(uuid.uuid4())
    with app_session(pg, uid) as c:
        _, cid = new_chat(c)
        for i in range(6):
            c.execute("SELECT memory.add_message(%s, %s, %s)", (cid, "user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * 60))
        c.execute("SELECT memory.request_summary(%s)", (cid,))
    wait_for(lambda: fetch_on(pg, "SELECT count(*) FROM memory.llm_calls WHERE conversation_id = %s AND kind = 'summary' AND status = 'ok'", cid)[0] == 1)
    row = fetch_on(pg, "SELECT model, prompt_tokens, completion_tokens, cost_usd FROM memory.llm_calls"
                    " WHERE conversation_id = %s AND kind = 'summary'", cid)
    assert row[0] == MODEL and row[3] == expected(row[1:3], "1.00", "3.00")
    assert fetch_on(pg, "SELECT day_cost_usd FROM memory.user_usage WHERE user_id = %s", uid)[0] == row[3]


def test_cost_per_day_agent_and_conversation_for_whoever_may_see_the_calls(pg, llm):
    """usage_daily, agent_performance and conversation_costs add the calls' cost; a user sees
    its own calls' figures and nobody else's, an operator (superuser) everyone's."""
    price(pg, MODEL, "0.59", "0.79")
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    with app_session(pg, alice) as c:
        agent, cid = new_chat(c)
        for text in ("one", "two", "three"):
            c.execute("SELECT memory.chat(%s, %s)", (cid, text))
        calls = c.execute("SELECT prompt_tokens, completion_tokens FROM memory.llm_calls WHERE conversation_id = %s", (cid,)).fetchall()
        cost = sum(expected(r, "0.59", "0.79") for r in calls)
        assert one(c, "SELECT sum(cost_usd) FROM memory.usage_daily WHERE agent_id = %s", agent) == cost
        assert one(c, "SELECT cost_usd FROM memory.agent_performance WHERE agent_id = %s", agent) == cost
        assert c.execute("SELECT llm_calls, cost_usd, unpriced_calls FROM memory.conversation_costs WHERE conversation_id = %s",
                         (cid,)).fetchall() == [(3, cost, 0)]
        c.execute("SELECT memory.share_conversation(%s, %s, 'viewer')", (cid, bob))
    with app_session(pg, bob) as c:
        # bob reads the conversation, not the calls charged to alice
        assert one(c, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == 6
        assert one(c, "SELECT count(*) FROM memory.conversation_costs WHERE conversation_id = %s", cid) == 0
        assert one(c, "SELECT count(*) FROM memory.agent_performance WHERE agent_id = %s", agent) == 0
        assert one(c, "SELECT sum(cost_usd) FROM memory.usage_daily WHERE user_id = %s", alice) is None
    assert fetch_on(pg, "SELECT sum(cost_usd) FROM memory.conversation_costs WHERE conversation_id = %s", cid)[0] == cost


def test_the_daily_cost_limit_stops_turns_before_the_llm_is_called(pg, llm):
    """Over memory.max_llm_cost_per_day a chat turn fails with PT429 before any LLM call and
    writes nothing; rolling a turn back is no way past it (the ledger's charge is priced until
    the worker writes it); calls of a model without a price count nothing."""
    price(pg, MODEL, "1000", "1000")  # a turn of a few dozen tokens costs a few cents
    reload_setting(pg, "memory.max_llm_cost_per_day", "0.01")
    uid = str(uuid.uuid4())
    with app_session(pg, uid) as c:
        _, cid = new_chat(c)
        c.execute("SELECT memory.chat(%s, 'the first turn is under the limit')", (cid,))
        spent = one(c, "SELECT sum(cost_usd) FROM memory.llm_calls WHERE conversation_id = %s", cid)
        assert spent >= Decimal("0.01")
        calls, messages = len(llm.requests), 2
        with pytest.raises(psycopg.Error) as err:
            c.execute("SELECT memory.chat(%s, 'over it')", (cid,))
        assert err.value.sqlstate == "PT429" and "daily LLM cost limit" in str(err.value), err.value
        assert "memory.max_llm_cost_per_day" in err.value.diag.message_hint
        assert len(llm.requests) == calls, "the refused turn called the LLM"
        assert one(c, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == messages
        # over the limit, a turn with any model is refused
        _, other_model = new_chat(c, model="unpriced-model")
        with pytest.raises(psycopg.Error) as err:
            c.execute("SELECT memory.chat(%s, 'still over, whatever the model')", (other_model,))
        assert err.value.sqlstate == "PT429"
    with app_session(pg) as c:
        # calls of a model without a price add nothing the limit could count
        _, unpriced = new_chat(c, model="unpriced-model")
        for _ in range(3):
            c.execute("SELECT memory.chat(%s, 'free as far as memory_ext knows')", (unpriced,))
        assert one(c, "SELECT count(*) FROM memory.llm_calls WHERE conversation_id = %s AND cost_usd IS NULL", unpriced) == 3
    other = str(uuid.uuid4())
    # a slow worker: the rolled-back turn's charge stays in the ledger while the next turn asks
    reload_setting(pg, "memory.worker_naptime", 60000)
    try:
        with app_session(pg, other) as c:
            _, cid = new_chat(c)
            c.execute("BEGIN")
            c.execute("SELECT memory.chat(%s, 'rolled back, billed all the same')", (cid,))
            c.execute("ROLLBACK")
            assert fetch_on(pg, "SELECT memory._pending_llm_cost(%s) > 0.01", other)[0]
            with pytest.raises(psycopg.Error) as err:
                c.execute("SELECT memory.chat(%s, 'and again')", (cid,))
            assert err.value.sqlstate == "PT429"
    finally:
        reload_setting(pg, "memory.worker_naptime", 50)
    wait_for(lambda: fetch_on(pg, "SELECT count(*) FROM memory.llm_calls WHERE user_id = %s AND status = 'rolled_back'", other)[0] == 1)
    # written at its cost, and no longer counted twice
    assert fetch_on(pg, "SELECT cost_usd > 0.01, memory._pending_llm_cost(user_id) FROM memory.llm_calls WHERE user_id = %s", other) == (True, 0)
