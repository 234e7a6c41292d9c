"""The reviewed list of every function and table privilege of memory_ext, checked against the
catalog: a new function cannot slip in without being listed here with its security mode, how
its search_path is made safe, and who may execute it."""
import re

from support.pg import connect

# kind: "pinned"  — runs with search_path = pg_catalog, pg_temp
#       "pure-c"  — Rust that runs no SQL: nothing a search_path could redirect
#       "inlined" — SQL inlined into the policies (a SET clause would prevent that): every
#                   function and operator in its body is schema-qualified
# definer: SECURITY DEFINER; public: whether PUBLIC may execute it
REVIEWED = {
    # tokens and framing
    "estimate_tokens(text,text)": ("pure-c", False, True),
    "tokenize(text,text)": ("pure-c", False, True),
    "detokenize(integer[],text)": ("pure-c", False, True),
    "resolve_encoding(text)": ("pure-c", False, True),
    "default_encoding()": ("pure-c", False, True),
    "message_tokens(text,text,jsonb,text,text,text)": ("pure-c", False, True),
    "summary_tokens(text,text)": ("pure-c", False, True),
    "count_message_tokens(jsonb,text)": ("pure-c", False, True),
    "build_context_from(jsonb,integer,text,text)": ("pure-c", False, True),
    # identity, limits and the authorization rule
    "current_user_id()": ("pure-c", False, True),              # its SQL (a signed caller's check) is schema-qualified
    "pass_caller()": ("pinned", False, True),                   # signs the caller's own identity, nothing more
    "_clip(text)": ("pure-c", False, True),                    # what an error quotes of input
    "_caller_bypasses_rls()": ("pure-c", False, True),
    "_current_role_is_superuser()": ("pure-c", False, True),
    "_check_message_limits(bigint,integer)": ("pure-c", False, True),
    "_summarize_threshold(integer)": ("pure-c", False, True),
    "_max_messages_per_minute()": ("pure-c", False, False),
    "_max_llm_tokens_per_day()": ("pure-c", False, False),
    "_max_llm_cost_per_day()": ("pure-c", False, False),
    "_message_limit_applies()": ("pure-c", False, True),
    "_notify_messages()": ("pure-c", False, False),
    "_in_chat_turn()": ("pure-c", False, False),
    "_can_read_row(uuid,uuid,uuid,uuid[])": ("inlined", False, True),
    "_can_write_row(uuid,uuid,uuid,uuid[])": ("inlined", False, True),
    "_can_manage_row(uuid,uuid)": ("inlined", False, True),
    "_agent_applies(memory.agents,uuid,uuid)": ("inlined", False, True),
    "_can_write_conversation(uuid,uuid,uuid)": ("inlined", False, True),
    "_shared_with(uuid,boolean)": ("pinned", False, True),     # under the members' RLS: the caller's own memberships
    "can_read(uuid)": ("pinned", False, True),
    "can_write(uuid)": ("pinned", False, True),
    "can_manage(uuid)": ("pinned", False, True),
    "_require(uuid,text)": ("pinned", False, True),
    # conversations and the window
    "create_conversation(uuid,text,jsonb,text,uuid)": ("pinned", False, True),
    "add_message(uuid,text,text,jsonb,text,text,jsonb,text)": ("pinned", False, True),
    "get_messages(uuid,integer,bigint)": ("pinned", False, True),
    "list_conversations(uuid,integer,jsonb,text,timestamp with time zone,timestamp with time zone,uuid,boolean,boolean)": ("pinned", True, True),
    "_list_conversations(uuid,integer,jsonb,text,timestamp with time zone,timestamp with time zone,uuid,boolean,boolean)":
        ("pinned", True, False),                                          # the caller's own and accepted shares (the read rule)
    "delete_conversation(uuid)": ("pinned", False, True),
    "build_context(uuid,integer,text,double precision)": ("pinned", False, True),
    "_tool_keys(uuid,jsonb,text)": ("pinned", False, True),   # an index expression: every writer evaluates it
    # summaries
    "should_summarize(uuid)": ("pinned", False, True),
    "request_summary(uuid)": ("pinned", True, True),
    "summary_status(uuid)": ("pinned", False, True),
    "_newest_summary(uuid)": ("pinned", False, True),
    "_uncovered_tokens(uuid,bigint)": ("pinned", False, True),
    "_request_summary(uuid)": ("pinned", True, False),       # checks can_write itself
    "_summary_job_status(uuid)": ("pinned", True, True),    # checks can_read itself
    "_enqueue_job(text,uuid)": ("pinned", False, False),
    "_tool_key_taken(text[])": ("pinned", False, False),
    # the worker's side of the queue
    "_attempts_exhausted(integer)": ("pinned", False, False),
    "_claim_job(uuid[])": ("pinned", False, False),
    "_finish_job(bigint,text,text,jsonb)": ("pinned", False, False),
    "_retry_job(bigint,text,double precision)": ("pinned", False, False),
    "_requeue_jobs(bigint[],text,interval)": ("pinned", False, False),
    "_recover_jobs()": ("pinned", False, False),
    # triggers: never callable, never attachable elsewhere
    # agents, chat turns, usage and limits
    "chat(uuid,text,jsonb)": ("pinned", False, True),
    "continue_chat(uuid)": ("pinned", False, True),
    "_chat_answer(uuid)": ("pinned", False, True),            # the Rust half of a turn, as the caller
    "_start_turn(uuid)": ("pinned", False, True),
    "_finish_turn(jsonb)": ("pinned", False, True),
    "_suppress_auto_reply()": ("pure-c", False, True),        # stops the caller's own auto-replies only
    "_auto_reply_suppressed()": ("pure-c", False, False),
    "create_agent(text,text,text,jsonb,integer,integer,real,integer,boolean,jsonb,integer)": ("pinned", False, True),
    "update_agent(uuid,text,text,text,jsonb,integer,integer,real,integer,boolean,jsonb,integer)": ("pinned", False, True),
    "delete_agent(uuid)": ("pinned", False, True),
    "get_agent(uuid)": ("pinned", False, True),
    "list_agents()": ("pinned", False, True),
    "request_reply(uuid)": ("pinned", True, True),
    "reply_status(bigint)": ("pinned", True, True),
    "_request_reply(uuid)": ("pinned", True, False),          # checks can_write itself
    "_reply_status(bigint)": ("pinned", True, False),         # checks can_read itself
    "_take_message_quota()": ("pinned", True, True),         # spends the caller's own quota only
    "_take_message_quotas(integer)": ("pinned", True, False),  # the bulk routes' count, from their definer code
    "_take_minute_quota(uuid,integer,integer)": ("pinned", True, False),
    "_add_minute_messages(uuid,integer,timestamp with time zone)": ("pinned", True, False),  # also the worker's
    "_pending_rolled_back_turns(uuid)": ("pure-c", False, False),
    "_caller_token_quota_error()": ("pinned", True, True),   # the caller's own quota only
    "_token_quota_error(uuid)": ("pinned", False, False),
    "_pending_llm_tokens(uuid)": ("pure-c", False, False),
    "_pending_llm_charges(uuid)": ("pure-c", False, False),
    "_pending_llm_cost(uuid)": ("pinned", False, False),
    "_llm_call_cost(text,bigint,bigint,timestamp with time zone)": ("pinned", False, False),
    "seed_model_prices()": ("pinned", False, False),                    # operators only: writes model_prices
    "_record_chat_call(uuid,uuid,text,integer,integer,integer,integer,double precision)": ("pinned", True, True),  # refuses outside memory.chat
    "_check_token_quota_of(uuid)": ("pinned", False, False),
    "_raise_error(jsonb)": ("pinned", False, True),
    "_agent_before_write()": ("pinned", False, False),
    "_llm_call_after_write()": ("pinned", False, False),
    "_llm_call_days_write()": ("pinned", True, False),  # a foreign key's cascade fires it as the deleting user
    "_add_llm_call_day(memory.llm_calls,integer)": ("pinned", False, False),
    "_llm_call_price()": ("pinned", False, False),
    "_model_prices_no_overlap()": ("pinned", False, False),
    "_conversation_before_insert()": ("pinned", False, False),
    "_conversation_before_update()": ("pinned", False, False),
    "_check_size(text,bigint)": ("pinned", False, True),   # raises or not: nothing to see
    "_conversation_check_size()": ("pinned", False, False),
    "_template_before_write()": ("pinned", False, False),
    "_message_before_insert()": ("pinned", False, False),
    "_message_before_insert_write()": ("pinned", True, False),
    "_message_take_quota()": ("pinned", False, False),
    "_messages_statement_begin()": ("pure-c", False, False),   # a frame per INSERT statement (backend memory only)
    "_messages_statement_end()": ("pure-c", False, False),
    "_message_before_update()": ("pinned", False, False),
    "_messages_after_insert()": ("pinned", True, False),
    "_messages_after_insert_checks()": ("pinned", True, False),
    "_append_follow_up_due()": ("pure-c", False, True),   # the follow-up trigger's WHEN: reads the caller's own statement
    "_messages_after_delete()": ("pinned", True, False),
    "_count_message_days(uuid,date[])": ("pinned", False, False),   # the definer triggers', import's and fork's
    "_roll_up_message_days(integer)": ("pinned", False, False),     # the worker's
    "_message_days_tail()": ("pinned", False, True),                # the message_days view's, under the caller's RLS
    "_tool_call_count(jsonb)": ("inlined", False, True),   # in memory._message_days_tail, run as the reader
    "_jobs_count_queued()": ("pinned", True, False),       # trigger: keeps queue_turns (cascades run as the deleting user)
    "_summary_before_insert()": ("pinned", False, False),
    # export and import, fork and rewind
    "export_conversation(uuid,text)": ("pinned", False, True),
    "import_conversation(jsonb,uuid,text)": ("pinned", False, True),
    "fork_conversation(uuid,bigint,text)": ("pinned", True, True),
    "rewind_conversation(uuid,bigint)": ("pinned", True, True),
    "_export_json(memory.conversations,bigint)": ("pinned", False, True),  # invoker: reads what the caller may read
    "_md_fenced(text,text)": ("pinned", False, True),
    "_md_inline(text)": ("pinned", False, True),
    "_md_message(memory.conversation_messages)": ("pinned", False, True),
    "_import_summary_times(uuid,jsonb)": ("pinned", True, True),       # the caller's own conversation, timestamps only
    "_import_messages(uuid,jsonb)": ("pinned", True, True),            # the caller's own empty, open conversation; counts the limits itself
    "_fork_conversation(uuid,bigint,text)": ("pinned", True, False),    # checks can_read itself
    "_rewind_conversation(uuid,bigint)": ("pinned", True, False),       # checks can_manage itself
    "_tool_group_cut(uuid,bigint)": ("pinned", False, False),
    "_append_all(uuid,jsonb,text)": ("pinned", False, True),            # invoker: appends as the caller
    # search
    "_search_config()": ("pure-c", False, True),
    "_conversation_lexeme(uuid)": ("inlined", False, True),
    "_owner_lexeme(uuid)": ("inlined", False, True),
    "_search_vector(regconfig,uuid,uuid,text,jsonb)": ("pinned", False, True),
    "search_messages(text,uuid,uuid,text,timestamp with time zone,timestamp with time zone,text,boolean,integer,text,text)": ("pinned", False, True),
    "reindex_search(integer)": ("pinned", False, False),                 # superusers only
    "_search_hits(tsquery,uuid,uuid,text,timestamp with time zone,timestamp with time zone,text,boolean,integer,real,uuid)":
        ("pinned", True, True),                                          # computes the caller's scope by the rule itself
    # semantic and hybrid search, embeddings
    "_semantic_hits(text,text,uuid,uuid,text,timestamp with time zone,timestamp with time zone,text,boolean,integer,real,uuid)":
        ("pinned", True, True),                                          # computes the caller's scope by the rule itself
    "_hybrid_hits(tsquery,text,text,uuid,uuid,text,timestamp with time zone,timestamp with time zone,text,boolean,integer,real,uuid)":
        ("pinned", False, True),                                         # invoker: fuses the two scoped rankings
    "_embed_query(text,text)": ("pure-c", False, True),                  # search_messages' query embedding, as the caller
    "_embedding_model()": ("pure-c", False, True),
    "_embedding_min_similarity()": ("pure-c", False, True),
    "_vector_schema()": ("pinned", False, True),                       # the catalog's answer; invoker recall needs it
    "_recall_candidates(uuid,bigint,bigint,uuid,uuid)": ("pinned", False, True),  # invoker: RLS applies
    "_embedding_batch(uuid,text,integer)": ("pinned", False, False),     # the worker's
    "_store_embeddings(uuid,text,uuid[],text[],text[])": ("pinned", False, False),  # the worker's
    # branches
    "_branch_off(uuid,bigint)": ("pinned", True, True),                # moves a tail aside; checks manage itself
    "_branch_path(uuid,uuid)": ("pinned", False, True),                # invoker: RLS shows what the caller reads
    "edit_message(uuid,text)": ("pinned", False, True),                # invoker: the new version is the caller's append
    "regenerate(uuid)": ("pinned", False, True),                       # invoker: continue_chat as the caller
    "switch_branch(uuid,uuid)": ("pinned", False, True),               # invoker: restores as the caller
    "list_branches(uuid)": ("pinned", False, True),
    "message_siblings(uuid)": ("pinned", False, True),                 # invoker: RLS applies
    "_lock_for_branching(uuid)": ("pinned", False, True),              # invoker: the owner's row lock under RLS
    # facts (long-term memory)
    "_extract_facts()": ("pure-c", False, False),                       # read by the messages' definer trigger
    "_fact_json(memory.facts)": ("pinned", False, True),                # the shape list/add/edit_fact return
    "list_facts(uuid,boolean)": ("pinned", False, True),                # invoker: RLS shows one's own facts
    "add_fact(text,uuid)": ("pinned", False, True),                     # invoker: the facts' policy checks the row
    "edit_fact(uuid,text)": ("pinned", False, True),
    "delete_fact(uuid)": ("pinned", False, True),
    "_fact_before_write()": ("pinned", False, False),                   # trigger: validation
    "_fact_after_write()": ("pinned", True, False),                     # queues the new fact's embedding
    "_fact_batch(uuid,integer)": ("pinned", False, False),              # the worker's
    "_known_facts(uuid,integer)": ("pinned", False, False),             # the worker's
    "_apply_facts(uuid,bigint,jsonb,uuid[])": ("pinned", False, False),  # the worker's
    "queue_embeddings(uuid)": ("pinned", False, False),                  # superusers only
    "save_as_template(uuid,text)": ("pinned", False, True),
    "list_templates()": ("pinned", False, True),
    "delete_template(uuid)": ("pinned", False, True),
    # sharing, share links, archive, erasure
    "share_conversation(uuid,uuid,text)": ("pinned", True, True),
    "_share_conversation(uuid,uuid,text)": ("pinned", True, False),       # checks can_manage itself
    "unshare_conversation(uuid,uuid)": ("pinned", True, True),
    "_unshare_conversation(uuid,uuid)": ("pinned", True, False),          # the caller's own membership, or can_manage
    "transfer_conversation(uuid,uuid)": ("pinned", True, True),
    "_transfer_conversation(uuid,uuid)": ("pinned", True, False),         # checks can_manage itself
    "list_members(uuid)": ("pinned", True, True),
    "_identity()": ("pinned", False, True),
    "list_share_offers()": ("pinned", False, True),                      # invoker: the members' RLS shows one's own
    "accept_shares(uuid,uuid)": ("pinned", True, True),
    "_accept_shares(uuid,uuid)": ("pinned", True, False),                 # the caller's own memberships only
    "decline_shares(uuid)": ("pinned", True, True),
    "_decline_shares(uuid)": ("pinned", True, False),                     # the caller's own memberships only
    "list_transfer_offers()": ("pinned", True, True),
    "_list_transfer_offers()": ("pinned", True, False),                   # offers the caller made or received
    "accept_transfer(uuid)": ("pinned", True, True),
    "_accept_transfer(uuid)": ("pinned", True, False),                    # an offer made to the caller by the owner
    "decline_transfer(uuid)": ("pinned", True, True),
    "_decline_transfer(uuid)": ("pinned", True, False),                   # an offer the caller made or received
    "_list_members(uuid)": ("pinned", True, False),                       # checks can_read itself
    "archive_conversation(uuid)": ("pinned", False, True),
    "unarchive_conversation(uuid)": ("pinned", False, True),
    "create_share_link(uuid,timestamp with time zone,bigint)": ("pinned", True, True),
    "_create_share_link(uuid,timestamp with time zone,bigint)": ("pinned", True, False),  # checks can_manage itself
    "get_shared_conversation(text)": ("pinned", True, True),
    "_get_shared_conversation(text)": ("pinned", True, False),            # the token is the authorization
    "list_share_links(uuid)": ("pinned", False, True),
    "revoke_share_link(uuid)": ("pinned", True, True),
    "_revoke_share_link(uuid)": ("pinned", True, False),                  # checks can_manage itself
    "retention_preview(integer)": ("pinned", False, True),               # invoker: RLS applies
    "_retention_due(integer)": ("pinned", False, True),                  # invoker: RLS applies
    "_enqueue_retention()": ("pinned", False, False),                    # the worker's
    "_retention_batch(integer,integer)": ("pinned", False, False),       # the worker's
    "erase_user(uuid)": ("pinned", True, True),
    "_erase_user(uuid)": ("pinned", True, False),                         # superusers and BYPASSRLS roles only
    "_forget_conversations(uuid[])": ("pinned", False, False),            # called by whoever deleted the conversations
}

TABLES = {
    # table: privileges of PUBLIC (column-level ones as table(column list))
    "conversations": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "conversation_messages": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "conversation_summaries": {"SELECT", "DELETE", "INSERT(content,conversation_id,covers_through_seq,model)"},
    "jobs": set(),
    "queue_turns": set(),
    "agents": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "llm_calls": {"SELECT"},
    "user_usage": set(),
    "conversation_templates": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "conversation_members": {"SELECT"},
    "conversation_transfers": {"SELECT"},
    "share_links": {"SELECT"},
    "model_prices": {"SELECT"},
    "message_days_rollup": {"SELECT"},
    "message_days_marks": {"SELECT"},
    "message_embeddings": {"SELECT"},
    "llm_call_days": {"SELECT"},
    "facts": {"SELECT", "DELETE", "INSERT(agent_id,content)", "UPDATE(content)"},
    "fact_progress": set(),
    "branch_messages": {"SELECT", "DELETE"},
}


def functions(db):
    with connect(db) as c:
        return c.execute("""
            SELECT regexp_replace(p.oid::regprocedure::text, '^memory\\.', ''), l.lanname, p.prosecdef,
                   coalesce(p.proconfig, '{}'), has_function_privilege('public', p.oid, 'EXECUTE'), p.prosrc
              FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
             WHERE p.pronamespace = 'memory'::regnamespace""").fetchall()


def test_every_function_is_reviewed(db):
    found = {row[0] for row in functions(db)}
    assert found - REVIEWED.keys() == set(), "functions not yet reviewed in this file"
    assert REVIEWED.keys() - found == set(), "reviewed functions that no longer exist"


def test_security_mode_search_path_and_execute_grants(db):
    for name, lang, definer, config, public, src in functions(db):
        kind, want_definer, want_public = REVIEWED[name]
        assert definer == want_definer, f"{name}: SECURITY DEFINER is {definer}"
        assert public == want_public, f"{name}: EXECUTE for PUBLIC is {public}"
        if definer and not name.startswith("_"):
            # an entry point that runs as the owner only to reach its internal implementation
            impl = "memory._" + name.split("(")[0] + "("
            assert impl in src, f"{name}: a public definer does nothing but call {impl}…)"
        pinned = "search_path=pg_catalog, pg_temp" in config
        if kind == "pinned":
            assert pinned, f"{name}: search_path not pinned ({config})"
        elif kind == "pure-c":
            assert lang == "c" and not definer, f"{name}: only Rust without SQL may go unpinned"
        else:
            assert lang == "sql" and not pinned, name
            body = re.sub(r"OPERATOR\(pg_catalog\.[^)]+\)", " ", src)
            assert not re.search(r"[=<>|+*/~!@#%^&?-]", body), f"{name}: an unqualified operator in {src!r}"
            calls = re.findall(r"([\w.]+)\s*\(", re.sub(r"\bANY\s*\(([^)]*)\)", r" \1 ", body))
            assert all("." in f for f in calls), f"{name}: an unqualified function in {src!r}"


# Internal functions that the library's Rust code calls while it runs as the caller (a chat turn,
# build_context, the insert trigger): a call the catalog cannot show.
CALLED_FROM_RUST = {"_caller_token_quota_error", "_record_chat_call", "_newest_summary", "_recall_candidates", "_search_vector",
                    "_can_write_conversation"}


def test_no_internal_function_is_an_rpc_endpoint_unless_the_caller_runs_it(db):
    """memory._x is internal. It is executable by PUBLIC only when code that runs as the caller
    calls it, so that revoking it would break a route: a policy or index expression, a view (they
    are security_invoker), an invoker function that PUBLIC may execute, an invoker trigger function (triggers fire as the writer),
    or the Rust turn.
    Everything else is revoked (the definer implementations behind public entry points among
    them): no internal helper is an RPC endpoint of its own. A helper that runs as the owner and
    stays executable checks the authorization rule itself (see REVIEWED)."""
    with connect(db) as c:
        rows = c.execute("""
            SELECT p.proname, p.prosecdef, has_function_privilege('public', p.oid, 'EXECUTE'),
                   p.prorettype = 'trigger'::regtype, p.prosrc
              FROM pg_proc p WHERE p.pronamespace = 'memory'::regnamespace""").fetchall()
        # policies and index expressions: evaluated as whoever reads or writes
        policies = " ".join(q or "" for row in c.execute(
            "SELECT qual, with_check FROM pg_policies WHERE schemaname = 'memory'").fetchall() for q in row)
        policies += " " + " ".join(d for (d,) in c.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'memory'").fetchall())
        # views (all security_invoker): evaluated as the reader
        assert c.execute("""SELECT array_agg(relname) FROM pg_class WHERE relnamespace = 'memory'::regnamespace
                             AND relkind = 'v' AND NOT coalesce(reloptions @> '{security_invoker=true}', false)""").fetchone()[0] is None
        policies += " " + " ".join(d for (d,) in c.execute("SELECT definition FROM pg_views WHERE schemaname = 'memory'").fetchall())
        # triggers' WHEN clauses: evaluated as the writer too
        policies += " " + " ".join(d for (d,) in c.execute("""
            SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t
             WHERE t.tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'memory'::regnamespace)
               AND NOT t.tgisinternal AND t.tgqual IS NOT NULL""").fetchall())
    # code that runs as the caller: invoker functions PUBLIC may call, and invoker triggers
    as_caller = [src for _n, definer, public, trigger, src in rows if not definer and (public or trigger)]
    exposed = sorted(name for name, _d, public, _t, _s in rows if public and name.startswith("_"))
    assert exposed, "the catalog query found no function"
    for name in exposed:
        call = re.compile(r'memory\.(?:"' + name + '"|' + name + r")\s*\(")
        needed = (name in CALLED_FROM_RUST or call.search(policies)
                  or any(call.search(src) for src in as_caller))
        assert needed, f"memory.{name} is executable by PUBLIC, though no code that runs as the caller calls it: revoke it"


def test_definer_functions_pin_search_path(db):
    """Belt and braces for the rule above: no SECURITY DEFINER function without a pinned path."""
    for name, _lang, definer, config, _public, _src in functions(db):
        if definer:
            assert "search_path=pg_catalog, pg_temp" in config, name


def test_table_privileges(db):
    with connect(db) as c:
        rows = c.execute("""
            SELECT c.relname, a.privilege_type
              FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.relnamespace = 'memory'::regnamespace AND c.relkind = 'r' AND a.grantee = 0""").fetchall()
        cols = c.execute("""
            SELECT c.relname, a.privilege_type, string_agg(att.attname, ',' ORDER BY att.attname)
              FROM pg_class c JOIN pg_attribute att ON att.attrelid = c.oid, aclexplode(att.attacl) a
             WHERE c.relnamespace = 'memory'::regnamespace AND a.grantee = 0
             GROUP BY 1, 2""").fetchall()
        tables = {r[0] for r in c.execute("SELECT relname FROM pg_class WHERE relnamespace = 'memory'::regnamespace AND relkind = 'r'")}
    got = {t: set() for t in tables}
    for t, p in rows:
        got[t].add(p)
    for t, p, names in cols:
        got[t].add(f"{p}({names})")
    assert got == TABLES
    with connect(db) as c:
        rls = dict(c.execute("SELECT relname, relrowsecurity FROM pg_class WHERE relnamespace = 'memory'::regnamespace AND relkind = 'r'").fetchall())
    assert all(rls.values()), rls
