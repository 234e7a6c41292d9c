"""The signed caller: memory.pass_caller() writes the caller's identity as memory.caller, signed
with memory.node_secret and bound to the session, for the nodes of a Citus cluster that evaluate
row-level security where the caller's own settings never arrive. No login can write a caller it
was not given, a caller copied into another session does not verify, and on a connection Citus
opened from another node only a signed caller counts.

The tests at the end need the Citus stage's two workers (MEMORY_EXT_TEST_CITUS_WORKERS); the
rest run on every stage."""
import hashlib
import hmac
import time
import uuid

import pytest
from psycopg import errors, sql

from support.pg import CITUS_WORKERS, PORT, as_guc_user, as_jwt_user, connect, new_user, rpc, set_node_secret

SECRET = "a test node secret, 32 characters or more"
AGENT = str(uuid.uuid4())
FORGED_MAC = "0" * 64
needs_workers = pytest.mark.skipif(not CITUS_WORKERS, reason="runs in the Citus stage, on its two workers")


@pytest.fixture
def secret():
    set_node_secret(SECRET, [PORT, *CITUS_WORKERS])
    yield SECRET
    set_node_secret(None, [PORT, *CITUS_WORKERS])


def session_of(c):
    """What a signed caller is bound to: Citus's global process id, else the backend's pid."""
    citus = c.execute("SELECT to_regprocedure('pg_catalog.citus_backend_gpid()') IS NOT NULL").fetchone()[0]
    return c.execute("SELECT citus_backend_gpid()" if citus else "SELECT pg_backend_pid()::bigint").fetchone()[0]


def mint(user, session, expires, secret=SECRET):
    """A signed caller computed here, from the format alone: v1.user.session.expires.hmac."""
    signed = f"v1.{user}.{session}.{expires}"
    return signed + "." + hmac.new(secret.encode(), signed.encode(), hashlib.sha256).hexdigest()


def caller_setting(c):
    return c.execute("SELECT current_setting('memory.caller')").fetchone()[0]


def test_pass_caller_needs_a_node_secret(db):
    a = new_user()
    with as_guc_user(db, a) as c:
        with pytest.raises(errors.ObjectNotInPrerequisiteState) as e:
            with c.transaction():
                c.execute("SELECT memory.pass_caller()")
        assert "memory.node_secret is not set" in str(e.value)
        assert caller_setting(c) == ""
    set_node_secret("too short", [PORT])
    try:
        with as_guc_user(db, a) as c:
            with pytest.raises(errors.ObjectNotInPrerequisiteState, match="shorter than 32 characters"):
                with c.transaction():
                    c.execute("SELECT memory.pass_caller()")
    finally:
        set_node_secret(None, [PORT])


def test_a_passed_caller_is_the_identity_for_its_transaction(db, secret):
    a = new_user()
    with as_guc_user(db, a) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s, 'mine')).id", AGENT)
        with c.transaction():
            assert str(rpc(c, "SELECT memory.pass_caller()")) == a
            token = caller_setting(c)
            version, user, session, expires, mac = token.split(".")
            assert (version, user, int(session)) == ("v1", a, session_of(c))
            assert 3590 <= int(expires) - time.time() <= 3600
            # the MAC is HMAC-SHA256 of the fields before it, keyed with the node secret
            assert token == mint(a, session, expires)
            assert str(rpc(c, "SELECT memory.current_user_id()")) == a
            assert rpc(c, "SELECT count(*) FROM memory.conversations WHERE id = %s", cid) == 1
        # SET LOCAL: gone with the transaction
        assert caller_setting(c) == ""


def test_pass_caller_as_postgrest_pre_request_signs_the_claims_sub(db, secret):
    """PostgREST (db-pre-request = memory.pass_caller) calls it in each request's transaction,
    after SET LOCAL ROLE and the claims."""
    a = new_user()
    with as_jwt_user(db, a) as c:
        assert str(rpc(c, "SELECT memory.pass_caller()")) == a
        assert caller_setting(c).startswith(f"v1.{a}.")
        assert str(rpc(c, "SELECT memory.current_user_id()")) == a


def test_the_passed_caller_wins_for_the_rest_of_the_transaction(db, secret):
    """An application server that switches memory.user_id after passing a caller does not change
    who the transaction's reads are for: the workers only ever see the signed one."""
    a, b = new_user(), new_user()
    with as_guc_user(db, a) as c:
        with c.transaction():
            c.execute("SELECT memory.pass_caller()")
            c.execute("SELECT set_config('memory.user_id', %s, true)", (b,))
            assert str(rpc(c, "SELECT memory.current_user_id()")) == a


def test_pass_caller_without_an_identity_passes_nothing(db, secret):
    with connect(db, "enduser") as c:
        with c.transaction():
            assert rpc(c, "SELECT memory.pass_caller()") is None
            assert caller_setting(c) == ""


def test_a_caller_written_by_hand_is_refused_and_changes_nothing(db, secret):
    a = new_user()
    with as_guc_user(db, a) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s, 'private')).id", AGENT)
    with connect(db, "enduser") as c:
        session = session_of(c)
        for query in ("SELECT memory.current_user_id()",
                      "SELECT count(*) FROM memory.conversations",
                      f"SELECT memory.add_message('{cid}', 'user', 'injected')"):
            with pytest.raises(errors.InvalidAuthorizationSpecification) as e:
                with c.transaction():
                    c.execute("SET LOCAL memory.caller = %s" % sql.quote(
                        f"v1.{a}.{session}.{int(time.time()) + 600}.{FORGED_MAC}"))
                    c.execute(query)
            assert "its signature does not match" in str(e.value), query
        for bad in ("not a token", a, mint(a, session, int(time.time()) + 600).replace("v1.", "v2.", 1)):
            with pytest.raises(errors.InvalidAuthorizationSpecification, match="not of the form"):
                with c.transaction():
                    c.execute("SET LOCAL memory.caller = %s" % sql.quote(bad))
                    c.execute("SELECT memory.current_user_id()")
        # signed with another secret
        with pytest.raises(errors.InvalidAuthorizationSpecification, match="signature does not match"):
            with c.transaction():
                c.execute("SET LOCAL memory.caller = %s" % sql.quote(
                    mint(a, session, int(time.time()) + 600, secret="another secret, 32 characters or more")))
                c.execute("SELECT memory.current_user_id()")
    with connect(db) as c:
        assert rpc(c, "SELECT message_count FROM memory.conversations WHERE id = %s", cid) == 0


def test_a_caller_of_another_session_or_past_its_expiry_is_refused(db, secret):
    a = new_user()
    with as_guc_user(db, a) as c:
        with c.transaction():
            c.execute("SELECT memory.pass_caller()")
            stolen = caller_setting(c)
    with connect(db, "enduser") as c:
        with pytest.raises(errors.InvalidAuthorizationSpecification, match="signed for another session"):
            with c.transaction():
                c.execute("SET LOCAL memory.caller = %s" % sql.quote(stolen))
                c.execute("SELECT count(*) FROM memory.conversations")
        session = session_of(c)
        with pytest.raises(errors.InvalidAuthorizationSpecification, match="has expired"):
            with c.transaction():
                c.execute("SET LOCAL memory.caller = %s" % sql.quote(mint(a, session, int(time.time()) - 1)))
                c.execute("SELECT memory.current_user_id()")
        # the same format with the right secret, session and time is accepted: the refusals
        # above are the checks, not a format this test got wrong
        with c.transaction():
            c.execute("SET LOCAL memory.caller = %s" % sql.quote(mint(a, session, int(time.time()) + 60)))
            assert str(rpc(c, "SELECT memory.current_user_id()")) == a


def test_the_node_secret_is_for_superusers_only(db, secret):
    with connect(db, "enduser") as c:
        for query in ("SHOW memory.node_secret", "SELECT current_setting('memory.node_secret')"):
            with pytest.raises(errors.InsufficientPrivilege):
                c.execute(query)
        assert "memory.node_secret" not in {r[0] for r in c.execute("SELECT name FROM pg_settings")}
        # and no session sets it: only the configuration file does
        with pytest.raises(errors.CantChangeRuntimeParam):
            c.execute("SET memory.node_secret = 'mine, and 32 characters or even more'")


# ---- on the Citus stage's workers ------------------------------------------------------------

ALICE, BOB = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"


@pytest.fixture
def docs(db, secret):
    """A distributed table whose policy is evaluated on the workers, with a caller the workers
    must know: 10 rows of ALICE and 10 of BOB, spread over the shards."""
    with connect(db) as c:
        c.execute("DROP TABLE IF EXISTS public.docs")
        c.execute("CREATE TABLE public.docs (conv int, owner uuid, body text)")
        c.execute("SELECT create_distributed_table('public.docs', 'conv')")
        c.execute("INSERT INTO public.docs SELECT g, CASE WHEN g %% 2 = 0 THEN %s::uuid ELSE %s::uuid END, 'b' || g"
                  " FROM generate_series(1, 20) g", (ALICE, BOB))
        c.execute("ALTER TABLE public.docs ENABLE ROW LEVEL SECURITY")
        c.execute("CREATE POLICY mine ON public.docs USING (owner = memory.current_user_id())")
        c.execute("GRANT SELECT ON public.docs TO PUBLIC")
        shards = c.execute("SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'public.docs'::regclass").fetchone()[0]
        assert shards == len(CITUS_WORKERS)
    yield "public.docs"
    with connect(db) as c:
        c.execute("DROP TABLE public.docs")


@needs_workers
def test_the_workers_see_the_passed_caller_and_only_it(db, docs):
    with as_guc_user(db, ALICE) as c:
        with c.transaction():
            # memory.user_id stays on the coordinator: the workers know no caller, and show nothing
            assert rpc(c, "SELECT count(*) FROM public.docs") == 0
        with c.transaction():
            c.execute("SELECT memory.pass_caller()")
            assert c.execute("SELECT count(*), count(*) FILTER (WHERE owner <> %s) FROM public.docs", (ALICE,)).fetchone() == (10, 0)
            assert c.execute("SELECT body FROM public.docs WHERE conv = 4").fetchall() == [("b4",)]
            assert c.execute("SELECT body FROM public.docs WHERE conv = 3").fetchall() == []


@needs_workers
def test_a_caller_written_by_hand_fails_on_the_workers(db, docs):
    with connect(db, "enduser") as c:
        session = session_of(c)
        with pytest.raises(errors.InvalidAuthorizationSpecification, match="signature does not match"):
            with c.transaction():
                c.execute("SET LOCAL citus.propagate_set_commands = 'local'")
                c.execute("SET LOCAL memory.caller = %s" % sql.quote(
                    f"v1.{ALICE}.{session}.{int(time.time()) + 600}.{FORGED_MAC}"))
                c.execute("SELECT count(*) FROM public.docs")


@needs_workers
def test_workers_trust_no_unsigned_identity_from_another_node(db, docs):
    """A SECURITY DEFINER function owned by a superuser reaches the workers as the superuser, who
    may assert any memory.user_id; a login that copies its own memory.user_id along
    (citus.propagate_set_commands) would be believed there. With a node secret the workers accept
    only a signed caller on such connections."""
    with connect(db) as c:
        c.execute("CREATE OR REPLACE FUNCTION public.count_mine() RETURNS bigint LANGUAGE sql SECURITY DEFINER"
                  " AS $$ SELECT count(*) FROM public.docs WHERE owner = memory.current_user_id() $$")

    def count_as_enduser_claiming_alice():
        with connect(db, "enduser") as c:
            with c.transaction():
                c.execute("SET LOCAL citus.propagate_set_commands = 'local'")
                c.execute("SET LOCAL memory.user_id = %s" % sql.quote(ALICE))
                assert rpc(c, "SELECT memory.current_user_id()") is None  # not trusted on the coordinator
                return rpc(c, "SELECT public.count_mine()")

    assert count_as_enduser_claiming_alice() == 0
    # the hole the rule closes: without a node secret on the workers, the claim is believed there
    set_node_secret(None, CITUS_WORKERS)
    try:
        assert count_as_enduser_claiming_alice() == 10
    finally:
        set_node_secret(SECRET, CITUS_WORKERS)
