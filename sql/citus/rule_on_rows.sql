-- memory_ext's distributed layout on Citus, step 2 of 2, after route_by_conversation.sql: the
-- authorization rule carried by the rows. Citus cannot push down a policy with a subquery, and one
-- server's policies ask the members table: here each distributed row that users read names its
-- conversation's owner and its accepted members (readers, and editors among them), the policies
-- compare these with the caller and nothing else, and triggers keep the lists when members come and
-- go or the owner changes. The caller reaches the workers signed (memory.pass_caller(),
-- docs/scaling.md). One statement per query, as step 1.

SET citus.enable_unsafe_triggers = on;
-- the tables whose rows carry their conversation's rule (the conversations carry their members)
CREATE TEMPORARY TABLE memory_ext_carry_the_rule (t text PRIMARY KEY);
INSERT INTO memory_ext_carry_the_rule VALUES ('conversation_messages'), ('conversation_summaries'),
    ('message_days_rollup'), ('message_days_marks'), ('share_links');

ALTER TABLE memory.conversations ADD COLUMN readers uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN editors uuid[] NOT NULL DEFAULT '{}';
DO $layout$
DECLARE
    v_t text;
BEGIN
    FOR v_t IN SELECT t FROM memory_ext_carry_the_rule LOOP
        EXECUTE format($s$ALTER TABLE memory.%I ADD COLUMN owner uuid,
            ADD COLUMN readers uuid[] NOT NULL DEFAULT '{}', ADD COLUMN editors uuid[] NOT NULL DEFAULT '{}'$s$, v_t);
    END LOOP;
END $layout$;
-- the rows already there take the rule of their conversation, with no trigger on every node the
-- transaction reaches (memory_ext's would date the conversations and messages as changed)
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL session_replication_role = replica;
UPDATE memory.conversations c
   SET readers = coalesce((SELECT array_agg(m.user_id ORDER BY m.user_id) FROM memory.conversation_members m
                            WHERE m.conversation_id = c.id AND m.accepted_at IS NOT NULL), '{}'),
       editors = coalesce((SELECT array_agg(m.user_id ORDER BY m.user_id) FROM memory.conversation_members m
                            WHERE m.conversation_id = c.id AND m.accepted_at IS NOT NULL AND m.role = 'editor'), '{}');
DO $layout$
DECLARE
    v_t text;
BEGIN
    FOR v_t IN SELECT t FROM memory_ext_carry_the_rule LOOP
        EXECUTE format($s$UPDATE memory.%I r SET owner = c.user_id, readers = c.readers, editors = c.editors
                            FROM memory.conversations c WHERE c.id = r.conversation_id$s$, v_t);
    END LOOP;
END $layout$;
SET LOCAL session_replication_role = origin;

-- A new message takes its conversation's rule from memory_ext's insert trigger, whatever the
-- writer supplied (it reads the conversation once per statement; a row trigger of its own that read
-- it for every row held a worker's memory per row, docs/scaling.md). Afterwards only memory_ext
-- changes a message's rule: the members' and owner's triggers below, as the owner.
CREATE OR REPLACE FUNCTION memory._message_keeps_the_rule() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    IF (NEW.owner, NEW.readers, NEW.editors) IS DISTINCT FROM (OLD.owner, OLD.readers, OLD.editors)
       AND NOT memory._current_role_is_superuser() THEN
        RAISE EXCEPTION 'owner, readers and editors are maintained by memory_ext: share the conversation'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $f$;
CREATE TRIGGER messages_keep_the_rule BEFORE UPDATE ON memory.conversation_messages
    FOR EACH ROW EXECUTE FUNCTION memory._message_keeps_the_rule();

-- A summary is written alone (by the worker, an import, a fork or a user's INSERT), the daily
-- figures and share links a few rows per statement: a row reads its conversation's rule here, on the shard,
-- whatever the writer supplied; a policy's WITH CHECK then judges the writer by it. Users have no
-- UPDATE on these tables.
CREATE OR REPLACE FUNCTION memory._row_takes_the_rule() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    SELECT c.user_id, c.readers, c.editors INTO NEW.owner, NEW.readers, NEW.editors
      FROM memory.conversations c WHERE c.id = NEW.conversation_id;
    RETURN NEW;
END $f$;
DO $layout$
DECLARE
    v_t text;
BEGIN
    FOR v_t IN SELECT t FROM memory_ext_carry_the_rule WHERE t <> 'conversation_messages' LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON memory.%I
                            FOR EACH ROW EXECUTE FUNCTION memory._row_takes_the_rule()', v_t || '_takes_the_rule', v_t);
    END LOOP;
END $layout$;
-- Citus names every column in the INSERT it sends to a shard, so the INSERT privilege on four
-- columns becomes one on the table: the triggers set every other column (the counts and time in
-- memory._summary_before_insert, the rule above) whatever the writer supplied.
GRANT INSERT ON memory.conversation_summaries TO PUBLIC;

-- Only memory_ext writes a conversation's readers and editors (the members' trigger, as the
-- owner). Not by column privileges: Citus sends an INSERT to a shard with every column named.
CREATE OR REPLACE FUNCTION memory._conversation_keeps_the_rule() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    IF (TG_OP = 'INSERT' AND (NEW.readers, NEW.editors) IS DISTINCT FROM ('{}'::uuid[], '{}'::uuid[])
        OR TG_OP = 'UPDATE' AND (NEW.readers, NEW.editors) IS DISTINCT FROM (OLD.readers, OLD.editors))
       AND NOT memory._current_role_is_superuser() THEN
        RAISE EXCEPTION 'readers and editors are maintained by memory_ext: share the conversation'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $f$;
CREATE TRIGGER conversations_keep_the_rule BEFORE INSERT OR UPDATE ON memory.conversations
    FOR EACH ROW EXECUTE FUNCTION memory._conversation_keeps_the_rule();

-- A transfer moves the owner on every row of the conversation that carries the rule.
CREATE OR REPLACE FUNCTION memory._conversation_owner_moves() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    UPDATE memory.conversation_messages r SET owner = NEW.user_id WHERE r.conversation_id = NEW.id;
    UPDATE memory.conversation_summaries r SET owner = NEW.user_id WHERE r.conversation_id = NEW.id;
    UPDATE memory.message_days_rollup r SET owner = NEW.user_id WHERE r.conversation_id = NEW.id;
    UPDATE memory.message_days_marks r SET owner = NEW.user_id WHERE r.conversation_id = NEW.id;
    UPDATE memory.share_links r SET owner = NEW.user_id WHERE r.conversation_id = NEW.id;
    RETURN NULL;
END $f$;
CREATE TRIGGER conversations_owner_moves AFTER UPDATE OF user_id ON memory.conversations
    FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id) EXECUTE FUNCTION memory._conversation_owner_moves();

-- A share, its acceptance, a role change or an unshare rewrites the conversation's rule on its
-- rows: all on the conversation's node, in the same transaction.
CREATE OR REPLACE FUNCTION memory._members_rewrite_the_rule() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    v_id      uuid := coalesce(NEW.conversation_id, OLD.conversation_id);
    v_readers uuid[];
    v_editors uuid[];
BEGIN
    SELECT coalesce(array_agg(m.user_id ORDER BY m.user_id), '{}'),
           coalesce(array_agg(m.user_id ORDER BY m.user_id) FILTER (WHERE m.role = 'editor'), '{}')
      INTO v_readers, v_editors
      FROM memory.conversation_members m WHERE m.conversation_id = v_id AND m.accepted_at IS NOT NULL;
    UPDATE memory.conversations c SET readers = v_readers, editors = v_editors
     WHERE c.id = v_id AND (c.readers, c.editors) IS DISTINCT FROM (v_readers, v_editors);
    UPDATE memory.conversation_messages r SET readers = v_readers, editors = v_editors
     WHERE r.conversation_id = v_id AND (r.readers, r.editors) IS DISTINCT FROM (v_readers, v_editors);
    UPDATE memory.conversation_summaries r SET readers = v_readers, editors = v_editors
     WHERE r.conversation_id = v_id AND (r.readers, r.editors) IS DISTINCT FROM (v_readers, v_editors);
    UPDATE memory.message_days_rollup r SET readers = v_readers, editors = v_editors
     WHERE r.conversation_id = v_id AND (r.readers, r.editors) IS DISTINCT FROM (v_readers, v_editors);
    UPDATE memory.message_days_marks r SET readers = v_readers, editors = v_editors
     WHERE r.conversation_id = v_id AND (r.readers, r.editors) IS DISTINCT FROM (v_readers, v_editors);
    UPDATE memory.share_links r SET readers = v_readers, editors = v_editors
     WHERE r.conversation_id = v_id AND (r.readers, r.editors) IS DISTINCT FROM (v_readers, v_editors);
    RETURN NULL;
END $f$;
CREATE TRIGGER members_rewrite_the_rule AFTER INSERT OR UPDATE OR DELETE ON memory.conversation_members
    FOR EACH ROW EXECUTE FUNCTION memory._members_rewrite_the_rule();

-- the policies: the rule on the row, no subquery (the caller is a plain call, computed once per
-- transaction and value by memory.current_user_id())
CREATE POLICY conversations_read ON memory.conversations FOR SELECT
    USING (user_id = memory.current_user_id() OR memory.current_user_id() = ANY (readers));
CREATE POLICY conversations_owner ON memory.conversations
    USING (user_id = memory.current_user_id()) WITH CHECK (user_id = memory.current_user_id());
CREATE POLICY messages_read ON memory.conversation_messages FOR SELECT
    USING (owner = memory.current_user_id() OR memory.current_user_id() = ANY (readers));
CREATE POLICY messages_append ON memory.conversation_messages FOR INSERT
    WITH CHECK (owner = memory.current_user_id() OR memory.current_user_id() = ANY (editors));
CREATE POLICY messages_update ON memory.conversation_messages FOR UPDATE
    USING (owner = memory.current_user_id() OR memory.current_user_id() = ANY (editors))
    WITH CHECK (owner = memory.current_user_id() OR memory.current_user_id() = ANY (editors));
CREATE POLICY messages_remove ON memory.conversation_messages FOR DELETE
    USING (owner = memory.current_user_id());
CREATE POLICY summaries_read ON memory.conversation_summaries FOR SELECT
    USING (owner = memory.current_user_id() OR memory.current_user_id() = ANY (readers));
CREATE POLICY summaries_add ON memory.conversation_summaries FOR INSERT
    WITH CHECK (owner = memory.current_user_id() OR memory.current_user_id() = ANY (editors));
CREATE POLICY summaries_remove ON memory.conversation_summaries FOR DELETE
    USING (owner = memory.current_user_id());
CREATE POLICY message_days_rollup_read ON memory.message_days_rollup FOR SELECT
    USING (owner = memory.current_user_id() OR memory.current_user_id() = ANY (readers));
CREATE POLICY message_days_marks_read ON memory.message_days_marks FOR SELECT
    USING (owner = memory.current_user_id() OR memory.current_user_id() = ANY (readers));
CREATE POLICY share_links_owner ON memory.share_links FOR SELECT USING (owner = memory.current_user_id());
CREATE POLICY transfers_visible ON memory.conversation_transfers FOR SELECT
    USING (from_user_id = memory.current_user_id() OR to_user_id = memory.current_user_id());
CREATE POLICY members_visible ON memory.conversation_members FOR SELECT
    USING (user_id = memory.current_user_id() OR owner_id = memory.current_user_id());

-- agents stay on the coordinator, but a policy whose subquery reads the distributed conversations
-- makes Citus plan every statement on agents, and it refuses the INSERT ... RETURNING of
-- create_agent: the question of a shared agent moves into a function, opaque to Citus, that asks
-- the conversations (a multi-shard query, for the agents whose owner shares their configuration
-- and that are not the caller's own)
CREATE OR REPLACE FUNCTION memory._reads_a_conversation_with(agent_id uuid, owner uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    v_me uuid := memory.current_user_id();
BEGIN
    RETURN EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.agent_id = _reads_a_conversation_with.agent_id AND c.user_id = _reads_a_conversation_with.owner
                      AND (c.user_id = v_me OR v_me = ANY (c.readers)));
END $f$;
-- The worker's rollup of the daily figures, a conversation at a time: Citus locks rows only in a
-- query routed to one shard (a multi-shard FOR NO KEY UPDATE is refused), so the conversations
-- behind their marks are found first and each locked on its own node, and what follows reads
-- after the lock (an append or delete holds that lock until it commits)
CREATE OR REPLACE FUNCTION memory._roll_up_message_days(p_limit integer) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    v_id   uuid;
    v_last bigint;
    v_from bigint;
    v_done integer := 0;
BEGIN
    FOR v_id IN SELECT c.id FROM memory.conversations c LEFT JOIN memory.message_days_marks k ON k.conversation_id = c.id
                 WHERE c.last_seq > coalesce(k.through_seq, 0) LIMIT p_limit LOOP
        SELECT c.last_seq INTO v_last FROM memory.conversations c WHERE c.id = v_id FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        v_from := coalesce((SELECT k.through_seq FROM memory.message_days_marks k WHERE k.conversation_id = v_id), 0);
        INSERT INTO memory.message_days_rollup AS d (conversation_id, day, author_id, messages, tokens, tool_calls, last_activity)
        SELECT m.conversation_id, (m.created_at AT TIME ZONE 'UTC')::date, m.author_id, count(*), sum(m.token_count),
               sum(memory._tool_call_count(m.tool_calls)), max(m.created_at)
          FROM memory.conversation_messages m
         WHERE m.conversation_id = v_id AND m.seq > v_from AND m.seq <= v_last
         GROUP BY 1, 2, 3
        ON CONFLICT (conversation_id, day, author_id) DO UPDATE
           SET messages = d.messages + excluded.messages,
               tokens = d.tokens + excluded.tokens,
               tool_calls = d.tool_calls + excluded.tool_calls,
               last_activity = greatest(d.last_activity, excluded.last_activity);
        INSERT INTO memory.message_days_marks AS k (conversation_id, through_seq) VALUES (v_id, v_last)
        ON CONFLICT (conversation_id) DO UPDATE SET through_seq = excluded.through_seq;
        v_done := v_done + 1;
    END LOOP;
    RETURN v_done;
END $f$;

-- The daily figures as a query of the co-located tables alone: one server's view adds the messages
-- after the marks through a function (memory._message_days_tail), which Citus would ship to the
-- conversation's shard with the rest of a routed query, where its own query of the distributed
-- tables is refused. (Only the coordinator reads the view: it is not propagated.)
SET citus.enable_ddl_propagation = off;
CREATE OR REPLACE VIEW memory.message_days WITH (security_invoker = true) AS
SELECT d.conversation_id, d.day, d.author_id,
       sum(d.messages)::bigint AS messages,
       sum(d.tokens)::bigint AS tokens,
       sum(d.tool_calls)::bigint AS tool_calls,
       max(d.last_activity) AS last_activity
  FROM (SELECT r.conversation_id, r.day, r.author_id, r.messages, r.tokens, r.tool_calls, r.last_activity
          FROM memory.message_days_rollup r
        UNION ALL
        SELECT m.conversation_id, (m.created_at AT TIME ZONE 'UTC')::date, m.author_id, count(*),
               sum(m.token_count)::bigint, sum(memory._tool_call_count(m.tool_calls))::bigint, max(m.created_at)
          FROM memory.conversation_messages m
          LEFT JOIN memory.message_days_marks k ON k.conversation_id = m.conversation_id
         WHERE m.seq > coalesce(k.through_seq, 0)
         GROUP BY 1, 2, 3) d
 GROUP BY d.conversation_id, d.day, d.author_id;
RESET citus.enable_ddl_propagation;

-- memory.chat records its call after the caller's own append: the definer must not read the
-- conversation's placement the caller has just written (Citus refuses a read of placements
-- "modified in this transaction by a different user"), so the caller is recorded as the user
-- and the owner read only where there is no caller (a superuser, the same user as the definer)
CREATE OR REPLACE FUNCTION memory._record_chat_call(
    p_conversation_id uuid, p_agent_id uuid, p_model text, p_prompt_tokens integer, p_completion_tokens integer,
    p_total_tokens integer, p_local_prompt_tokens integer, p_latency_ms double precision
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    v_id bigint;
    v_user uuid := memory.current_user_id();
BEGIN
    IF NOT memory._in_chat_turn() THEN
        RAISE EXCEPTION 'memory._record_chat_call is memory.chat''s own' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF v_user IS NULL THEN
        SELECT c.user_id INTO v_user FROM memory.conversations c WHERE c.id = p_conversation_id;
    END IF;
    INSERT INTO memory.llm_calls (conversation_id, user_id, agent_id, kind, model, prompt_tokens, completion_tokens,
                                  total_tokens, local_prompt_tokens, latency_ms, status)
    VALUES (p_conversation_id, v_user, p_agent_id, 'chat', p_model, p_prompt_tokens, p_completion_tokens, p_total_tokens,
            p_local_prompt_tokens, p_latency_ms, 'ok')
    RETURNING id INTO v_id;
    RETURN v_id;
END $f$;
DROP POLICY agents_of_readable_conversations ON memory.agents;
CREATE POLICY agents_of_readable_conversations ON memory.agents FOR SELECT
    USING (share_config AND memory._reads_a_conversation_with(id, user_id));

-- asked on the conversation's node, of a row of the same shard group: the nested query is local
CREATE OR REPLACE FUNCTION memory._can_write_conversation(conversation_id uuid, owner uuid, caller uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET citus.allow_nested_distributed_execution = on AS $f$
DECLARE
    v_editors uuid[];
BEGIN
    IF owner = caller THEN
        RETURN true;
    END IF;
    SELECT c.editors INTO v_editors FROM memory.conversations c WHERE c.id = conversation_id;
    RETURN caller = ANY (v_editors);
END $f$;
-- a tool call's id is looked up in its conversation's messages, on the shard the keys name (their
-- first 36 characters are the conversation's id): one server's lookup asks every message through
-- the keys' index, which from a shard would be a query of every shard
CREATE OR REPLACE FUNCTION memory._tool_key_taken(p_keys text[]) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET citus.allow_nested_distributed_execution = on AS $f$
DECLARE
    v_keys text[];
BEGIN
    SELECT memory._tool_keys(m.conversation_id, m.tool_calls, m.tool_call_id) INTO v_keys
      FROM memory.conversation_messages m
     WHERE m.conversation_id = left(p_keys[1], 36)::uuid
       AND (m.tool_calls IS NOT NULL OR m.tool_call_id IS NOT NULL)
       AND memory._tool_keys(m.conversation_id, m.tool_calls, m.tool_call_id) && p_keys
     LIMIT 1;
    RETURN (SELECT k FROM unnest(p_keys) AS k WHERE k = ANY (v_keys) LIMIT 1);
END $f$;
-- PL/pgSQL: Citus cannot plan a SQL function's parameterised query over a distributed table. The
-- caller is judged here, on the coordinator, and sent to the shard as a value: inside a SECURITY
-- DEFINER function Citus reaches the workers as the definer, so a call of
-- memory._caller_bypasses_rls() shipped with the query would judge the definer instead.

CREATE OR REPLACE FUNCTION memory._rule_allows(p_id uuid, p_readers boolean, p_editors boolean) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    v_all boolean := memory._caller_bypasses_rls();
    v_me  uuid := memory.current_user_id();
BEGIN
    RETURN EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = p_id AND (v_all OR c.user_id = v_me OR p_readers AND v_me = ANY (c.readers)
                                           OR p_editors AND v_me = ANY (c.editors)));
END $f$;
CREATE OR REPLACE FUNCTION memory.can_read(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $f$ SELECT memory._rule_allows($1, true, false) $f$;
CREATE OR REPLACE FUNCTION memory.can_write(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $f$ SELECT memory._rule_allows($1, false, true) $f$;
CREATE OR REPLACE FUNCTION memory.can_manage(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $f$ SELECT memory._rule_allows($1, false, false) $f$;
-- the conversations shared with the caller, from the members' shards (a multi-shard query, made
-- on the coordinator: list_conversations and search ask it there)
CREATE OR REPLACE FUNCTION memory._shared_with(caller uuid, editors_only boolean) RETURNS uuid[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    RETURN (SELECT coalesce(array_agg(m.conversation_id), '{}') FROM memory.conversation_members m
             WHERE m.user_id = _shared_with.caller AND m.accepted_at IS NOT NULL
               AND (NOT _shared_with.editors_only OR m.role = 'editor'));
END $f$;
-- CREATE OR REPLACE of an extension's function is not propagated by Citus: memory_ext's functions
-- replaced above that the shards' policies, triggers and routed queries call are copied to every
-- worker, with DDL propagation off there. Citus propagates the layout's new functions itself, in
-- this transaction, so they are not visible yet to these connections: copying one of them would
-- wait for this transaction to end, and the bodies of those that call them are not checked.
DO $layout$
DECLARE
    v_f regprocedure;
BEGIN
    FOREACH v_f IN ARRAY ARRAY['memory._can_write_conversation(uuid, uuid, uuid)', 'memory._tool_key_taken(text[])',
                               'memory.can_read(uuid)', 'memory.can_write(uuid)', 'memory.can_manage(uuid)',
                               'memory._shared_with(uuid, boolean)']::regprocedure[] LOOP
        PERFORM pg_temp.memory_ext_on_every_worker(format(
            'DO $w$ BEGIN PERFORM set_config(''citus.enable_ddl_propagation'', ''off'', true);
             PERFORM set_config(''check_function_bodies'', ''off'', true); EXECUTE %L; END $w$',
            pg_get_functiondef(v_f)));
    END LOOP;
END $layout$;
DROP TABLE memory_ext_carry_the_rule;

-- What the layout does not run yet — branches (edits, regenerations, rewinds and their listing),
-- forks and imports, whose tables stay on the coordinator or whose SQL Citus cannot plan — refuses
-- at once with feature_not_supported and a message that says so, rather than with Citus's planner
-- errors or, for an edit, a distributed deadlock. docs/scaling.md lists them.
DO $layout$
DECLARE
    v_f    regprocedure;
    v_name text;
BEGIN
    FOREACH v_f IN ARRAY ARRAY['memory.edit_message(uuid, text)', 'memory.regenerate(uuid)',
                               'memory.switch_branch(uuid, uuid)', 'memory.list_branches(uuid)',
                               'memory.message_siblings(uuid)', 'memory.rewind_conversation(uuid, bigint)',
                               'memory.fork_conversation(uuid, bigint, text)',
                               'memory.import_conversation(jsonb, uuid, text)']::regprocedure[] LOOP
        v_name := format('memory.%I', (SELECT p.proname FROM pg_proc p WHERE p.oid = v_f));
        EXECUTE format($def$CREATE OR REPLACE FUNCTION %s(%s) RETURNS %s
            LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $b$
            BEGIN
                RAISE EXCEPTION '%s is not available on the distributed layout yet' USING ERRCODE = 'feature_not_supported',
                    HINT = 'docs/scaling.md lists what the layout runs';
            END $b$$def$,
            v_name, pg_get_function_arguments(v_f), pg_get_function_result(v_f), v_name);
    END LOOP;
END $layout$;
