-- The triggers that make a plain INSERT into conversations and conversation_messages complete:
-- seq, token_count, conversation totals, updated_at, tool-call validation, the auto-summary check.
--
-- The counters (total_tokens, message_count, last_seq) are written only by the SECURITY DEFINER
-- statement-level triggers on messages (after INSERT, after DELETE), which run as the extension's
-- owner (a superuser): the guard on conversations lets counters change only when the current role
-- is a superuser, a state no ordinary login can reach (a trigger of its own, on a TEMP table or
-- elsewhere, runs as itself). An insert passes first through messages_before_insert, which runs
-- as the caller: it checks, under the caller's own RLS, that the caller may write the
-- conversation (owner or editor, not archived), and validates and counts the message; then
-- messages_before_insert_write (triggers fire in name order) locks the conversation, skips an
-- idempotent retry, gives the row its seq and checks its tool calls; once the statement has added
-- all its rows, messages_after_insert updates the counters (the daily figures are the worker's:
-- see memory._roll_up_message_days).
-- The two row triggers are Rust and ask their per-conversation questions once per statement (see
-- below). No trigger function is executable by PUBLIC, so none can be called directly or
-- attached to another table.

-- Raises 54000 when a value a user supplies (`what`: a conversation's title and metadata, a
-- message's metadata, a template) is larger than memory.max_message_size, the one bound on
-- everything users store; checked before the value is parsed further or stored.
CREATE OR REPLACE FUNCTION memory._check_size(what text, bytes bigint) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_max bigint := pg_size_bytes(current_setting('memory.max_message_size'));
BEGIN
    IF bytes > v_max THEN
        RAISE EXCEPTION '% too large: % bytes, the limit is % bytes', what, bytes, v_max
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Store large documents elsewhere and reference them; the operator can raise memory.max_message_size.';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION memory._conversation_before_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.encoding := memory.resolve_encoding(coalesce(NEW.encoding, memory.default_encoding()));
    -- counters belong to the triggers, whatever the INSERT said
    NEW.total_tokens := 0;
    NEW.message_count := 0;
    NEW.last_seq := 0;
    NEW.metadata := coalesce(NEW.metadata, '{}');
    NEW.created_at := coalesce(NEW.created_at, now());
    NEW.updated_at := NEW.created_at;
    RETURN NEW;
END $$;

CREATE TRIGGER conversations_before_insert BEFORE INSERT ON memory.conversations
    FOR EACH ROW EXECUTE FUNCTION memory._conversation_before_insert();

CREATE OR REPLACE FUNCTION memory._conversation_before_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION 'the id of a conversation cannot change' USING ERRCODE = 'feature_not_supported';
    END IF;
    IF NEW.encoding IS DISTINCT FROM OLD.encoding THEN
        IF OLD.message_count > 0 THEN
            RAISE EXCEPTION 'cannot change the encoding of conversation % : its % messages were counted in %',
                OLD.id, OLD.message_count, OLD.encoding USING ERRCODE = 'invalid_parameter_value';
        END IF;
        NEW.encoding := memory.resolve_encoding(NEW.encoding);
    END IF;
    IF (NEW.total_tokens, NEW.message_count, NEW.last_seq) IS DISTINCT FROM (OLD.total_tokens, OLD.message_count, OLD.last_seq) THEN
        IF NOT memory._current_role_is_superuser() THEN
            RAISE EXCEPTION 'total_tokens, message_count and last_seq are maintained by memory_ext'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    ELSE
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER conversations_before_update BEFORE UPDATE ON memory.conversations
    FOR EACH ROW EXECUTE FUNCTION memory._conversation_before_update();

-- A conversation's title and metadata are bounded like a message. A trigger of its own, fired only
-- by statements that set those columns, so that the counter updates of every append skip it.
CREATE OR REPLACE FUNCTION memory._conversation_check_size() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._check_size('a conversation''s title and metadata',
                               coalesce(octet_length(NEW.title), 0) + coalesce(pg_column_size(NEW.metadata), 0));
    RETURN NEW;
END $$;

-- (after conversations_before_insert, which fills in the default metadata: triggers fire in name order)
CREATE TRIGGER conversations_check_size BEFORE INSERT OR UPDATE OF title, metadata ON memory.conversations
    FOR EACH ROW EXECUTE FUNCTION memory._conversation_check_size();

-- The first of p_keys (see memory._tool_keys) that an earlier message of the conversation holds,
-- or NULL. One GIN scan probes every key once (linear in the keys); only the matching rows'
-- own keys are compared. Called by the insert trigger only, outside RLS, so that the GIN index
-- can serve the lookup (under RLS the planner may not use the non-leakproof && operator as an
-- index condition); p_keys all name the one conversation the trigger has checked.
CREATE OR REPLACE FUNCTION memory._tool_key_taken(p_keys text[]) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    v_keys text[];
BEGIN
    -- Always the GIN index (enable_seqscan = off): a plan made while the table was small, or with
    -- a guessed selectivity, would otherwise scan every message on every append.
    SELECT memory._tool_keys(m.conversation_id, m.tool_calls, m.tool_call_id) INTO v_keys
      FROM memory.conversation_messages m
     WHERE (m.tool_calls IS NOT NULL OR m.tool_call_id IS NOT NULL)
       AND memory._tool_keys(m.conversation_id, m.tool_calls, m.tool_call_id) && p_keys
     LIMIT 1;
    IF v_keys IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT k FROM unnest(p_keys) AS k WHERE k = ANY (v_keys) LIMIT 1);
END $$;

-- The row triggers of an insert are Rust (src/api/append.rs): messages_before_insert as the caller
-- (the access check under the caller's RLS, the size limits, validation and the token count, the
-- search words, the author), messages_before_insert_write as the owner (the
-- conversation's lock, an idempotent retry, the seq, the tool-call checks through the GIN index).
-- A statement-level pair brackets them with a frame in which each statement asks once per
-- conversation, at its first row, what it asked per row before: whether the caller may write it
-- (for the identity and role the row is written as), and its lock and next seq; the lock of a
-- statement's first row is the UPDATE that counts it (no running statement has written to the
-- conversation, and the row has no idempotency key to look for). The rest of the counters, the
-- auto-summary check, the agent's auto-reply and the NOTIFY on channel memory_messages follow once
-- per statement (memory._messages_after_insert and _messages_after_insert_checks), so an INSERT
-- ... SELECT of many rows does not rewrite the conversation's row once per message. One
-- consequence: a row that a later trigger of one's own or ON CONFLICT DO NOTHING drops leaves its
-- seq unused (a gap, as a rewind leaves one) when a later row of its statement took the next one;
-- else the statement's end gives the seq back.
CREATE OR REPLACE FUNCTION memory._message_before_insert() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'memory_message_before_insert';

CREATE OR REPLACE FUNCTION memory._message_before_insert_write() RETURNS trigger
LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'memory_message_before_insert_write';

CREATE OR REPLACE FUNCTION memory._messages_statement_begin() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'memory_messages_statement_begin';

CREATE OR REPLACE FUNCTION memory._messages_statement_end() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'memory_messages_statement_end';

CREATE TRIGGER messages_statement_begin BEFORE INSERT ON memory.conversation_messages
    FOR EACH STATEMENT EXECUTE FUNCTION memory._messages_statement_begin();

CREATE TRIGGER messages_before_insert BEFORE INSERT ON memory.conversation_messages
    FOR EACH ROW EXECUTE FUNCTION memory._message_before_insert();

-- The caller's messages-per-minute limit (PT429), when one applies: after the access check (a
-- conversation the caller cannot see costs nothing), before the lock. In SQL, which raises
-- memory_ext's own SQLSTATEs; the WHEN clause keeps its cost off appends when no limit is set.
CREATE OR REPLACE FUNCTION memory._message_take_quota() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._take_message_quota();
    RETURN NEW;
END $$;

CREATE TRIGGER messages_before_insert_quota BEFORE INSERT ON memory.conversation_messages
    FOR EACH ROW WHEN (memory._message_limit_applies()) EXECUTE FUNCTION memory._message_take_quota();

CREATE TRIGGER messages_before_insert_write BEFORE INSERT ON memory.conversation_messages
    FOR EACH ROW EXECUTE FUNCTION memory._message_before_insert_write();

-- The tool calls a message makes (what usage_daily counts). Plain SQL that PostgreSQL inlines
-- into the aggregates of the rollup and of memory._message_days_tail (no per-row call): so it
-- pins no search_path and qualifies every function and operator instead. Executable by PUBLIC:
-- the tail runs as whoever reads the analytics views (a pure function of its argument).
CREATE OR REPLACE FUNCTION memory._tool_call_count(tool_calls jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN pg_catalog.jsonb_typeof($1) OPERATOR(pg_catalog.=) 'array' THEN pg_catalog.jsonb_array_length($1)::bigint
                ELSE 0::bigint END
$$;

-- Counts a conversation's daily figures (memory.message_days_rollup) again from its stored
-- messages up to its mark: those of the given UTC days, or (p_days NULL) all of them after moving
-- the mark to the conversation's last seq. For what cannot be added up: a DELETE (the newest
-- message of a day may be gone, so the day's last activity cannot be decremented), and the routes
-- that write a whole conversation with the triggers off (the bulk import, a fork; the upgrade
-- that introduced the rollup). A conversation that no longer exists is skipped: its rows went
-- with it. Callers hold the conversation's row lock (or created it), as the rollup does.
-- PL/pgSQL, not SQL: it runs in the messages' delete trigger, on a Citus shard too, where a SQL
-- function's parameterised statements over distributed tables cannot be planned.
CREATE OR REPLACE FUNCTION memory._count_message_days(p_conversation_id uuid, p_days date[] DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO memory.message_days_marks AS k (conversation_id, through_seq)
    SELECT c.id, c.last_seq FROM memory.conversations c WHERE c.id = p_conversation_id AND p_days IS NULL
    ON CONFLICT (conversation_id) DO UPDATE SET through_seq = excluded.through_seq;
    DELETE FROM memory.message_days_rollup d
     WHERE d.conversation_id = p_conversation_id AND (p_days IS NULL OR d.day = ANY (p_days));
    INSERT INTO memory.message_days_rollup (conversation_id, day, author_id, messages, tokens, tool_calls, last_activity)
    SELECT m.conversation_id, (m.created_at AT TIME ZONE 'UTC')::date, m.author_id, count(*), sum(m.token_count),
           sum(memory._tool_call_count(m.tool_calls)), max(m.created_at)
      FROM memory.conversation_messages m
      JOIN memory.message_days_marks k ON k.conversation_id = m.conversation_id AND m.seq <= k.through_seq
     WHERE m.conversation_id = p_conversation_id
       AND (p_days IS NULL OR (m.created_at AT TIME ZONE 'UTC')::date = ANY (p_days))
     GROUP BY 1, 2, 3;
END $$;

-- The background worker's rollup: adds the messages after their conversation's mark to
-- memory.message_days_rollup and moves the mark, for at most p_limit conversations. A
-- conversation being written (an append, a delete: they hold its row lock until they commit) is
-- skipped and taken on a later pass. Returns how many conversations it rolled up.
CREATE OR REPLACE FUNCTION memory._roll_up_message_days(p_limit integer) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids uuid[];
BEGIN
    SELECT array_agg(p.id) INTO v_ids
      FROM (SELECT c.id FROM memory.conversations c
              LEFT JOIN memory.message_days_marks k ON k.conversation_id = c.id
             WHERE c.last_seq > coalesce(k.through_seq, 0)
             LIMIT p_limit
               FOR NO KEY UPDATE OF c SKIP LOCKED) p;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    -- One statement, so one snapshot, taken once the locks are held: it sees every append and
    -- delete that committed before, and the figures it adds and the mark it moves agree.
    WITH cur AS (
        SELECT c.id, c.last_seq, coalesce(k.through_seq, 0) AS from_seq
          FROM memory.conversations c LEFT JOIN memory.message_days_marks k ON k.conversation_id = c.id
         WHERE c.id = ANY (v_ids)
    ), added AS (
        INSERT INTO memory.message_days_rollup AS d (conversation_id, day, author_id, messages, tokens, tool_calls, last_activity)
        SELECT m.conversation_id, (m.created_at AT TIME ZONE 'UTC')::date, m.author_id, count(*), sum(m.token_count),
               sum(memory._tool_call_count(m.tool_calls)), max(m.created_at)
          FROM cur JOIN memory.conversation_messages m
            ON m.conversation_id = cur.id AND m.seq > cur.from_seq AND m.seq <= cur.last_seq
         GROUP BY 1, 2, 3
        ON CONFLICT ON CONSTRAINT message_days_rollup_key DO UPDATE
           SET messages = d.messages + excluded.messages,
               tokens = d.tokens + excluded.tokens,
               tool_calls = d.tool_calls + excluded.tool_calls,
               last_activity = greatest(d.last_activity, excluded.last_activity)
    )
    INSERT INTO memory.message_days_marks AS k (conversation_id, through_seq)
    SELECT cur.id, cur.last_seq FROM cur
    ON CONFLICT (conversation_id) DO UPDATE SET through_seq = excluded.through_seq;
    RETURN cardinality(v_ids);
END $$;

-- Once per INSERT statement, over the rows it added (Rust, src/api/append_counts.rs): the
-- conversations' counters, and a NOTIFY on channel memory_messages per message (with
-- memory.notify_messages; ids only: anyone may LISTEN, and only RLS decides who reads the row). A
-- statement's first row of a conversation usually counted itself in the UPDATE that locked the
-- conversation; this settles the rest (the statement's other rows, a row dropped after it was
-- counted) with one UPDATE per conversation, or none. SECURITY DEFINER for the counters (see the
-- top of this file); it touches only conversations the row triggers let the caller write.
CREATE OR REPLACE FUNCTION memory._messages_after_insert() RETURNS trigger
LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'memory_messages_after_insert';

-- Whether the running INSERT needs the follow-up below: its rows may have left a conversation
-- over its summarize threshold or asked an auto-reply agent for an answer (the row triggers keep
-- the running total), or embeddings or fact extraction are on. The follow-up trigger's
-- WHEN, so run as the caller: it reads only the caller's own statement and settings.
CREATE OR REPLACE FUNCTION memory._append_follow_up_due() RETURNS boolean
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'memory_append_follow_up_due';

CREATE TRIGGER messages_after_insert AFTER INSERT ON memory.conversation_messages
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION memory._messages_after_insert();

-- Then, when anything may be due: the auto-summary check (O(1): the running total, then the
-- newest summary's coverage), the agent's auto-reply, the embed job (with memory.embedding_model
-- set) and the extract job after a finished turn (with memory.extract_facts on). In SQL, so that
-- its errors keep memory_ext's SQLSTATEs (PT429 for an auto-reply over the owner's token limit).
-- SECURITY DEFINER: jobs are queued as the owner.
CREATE OR REPLACE FUNCTION memory._messages_after_insert_checks() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a           record;
    r           record;
    v_threshold bigint;
    v_agent_threshold integer;
    v_auto_reply boolean;
    v_embed      boolean := memory._embedding_model() IS NOT NULL;
    v_extract    boolean := memory._extract_facts();
BEGIN
    -- the transition table is read alone, and each conversation by its id: on a Citus shard a
    -- query joining the transition table with a distributed table cannot see the transition
    -- table (docs/scaling.md)
    FOR a IN
        SELECT n.conversation_id,
               bool_or(n.role = 'user') AS has_user,
               bool_or(n.role = 'assistant' AND n.tool_calls IS NULL) AS has_answer
          FROM added n GROUP BY n.conversation_id
    LOOP
        SELECT c.id, c.total_tokens, c.agent_id, c.user_id, a.has_user, a.has_answer INTO r
          FROM memory.conversations c WHERE c.id = a.conversation_id;
        CONTINUE WHEN NOT FOUND;
        -- the conversation's agent, if one applies (memory._agent_applies)
        v_agent_threshold := NULL;
        v_auto_reply := false;
        SELECT ag.summarize_threshold, ag.auto_reply INTO v_agent_threshold, v_auto_reply
          FROM memory.agents ag WHERE memory._agent_applies(ag, r.agent_id, r.user_id);
        v_threshold := memory._summarize_threshold(v_agent_threshold);
        IF r.total_tokens > v_threshold AND memory._uncovered_tokens(r.id, r.total_tokens) > v_threshold THEN
            PERFORM memory._enqueue_job('summary', r.id);
        END IF;
        -- A user message to an auto-reply agent queues its answer (not inside memory.chat, which
        -- answers it itself); over the owner's daily token limit the message is refused (PT429).
        IF v_auto_reply AND r.has_user AND NOT memory._auto_reply_suppressed() THEN
            PERFORM memory._check_token_quota_of(r.user_id);
            PERFORM memory._enqueue_job('reply', r.id);
        END IF;
        IF v_embed THEN
            PERFORM memory._enqueue_job('embed', r.id);
        END IF;
        IF v_extract AND r.has_answer THEN
            PERFORM memory._enqueue_job('extract', r.id);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_after_insert_checks AFTER INSERT ON memory.conversation_messages
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT WHEN (memory._append_follow_up_due())
    EXECUTE FUNCTION memory._messages_after_insert_checks();

-- (after messages_after_insert and its checks: triggers fire in name order)
CREATE TRIGGER messages_statement_end AFTER INSERT ON memory.conversation_messages
    FOR EACH STATEMENT EXECUTE FUNCTION memory._messages_statement_end();

CREATE OR REPLACE FUNCTION memory._message_before_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (NEW.id, NEW.conversation_id, NEW.seq, NEW.role, NEW.content, NEW.name, NEW.tool_calls::text,
        NEW.tool_call_id, NEW.token_count, NEW.created_at, NEW.idempotency_key, NEW.author_id)
       IS DISTINCT FROM
       (OLD.id, OLD.conversation_id, OLD.seq, OLD.role, OLD.content, OLD.name, OLD.tool_calls::text,
        OLD.tool_call_id, OLD.token_count, OLD.created_at, OLD.idempotency_key, OLD.author_id) THEN
        RAISE EXCEPTION 'messages are append-only: only metadata can be updated'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'add a new message, or delete the conversation';
    END IF;
    IF NEW.metadata IS DISTINCT FROM OLD.metadata THEN
        PERFORM memory._check_size('a message with its metadata',
            octet_length(NEW.content) + coalesce(pg_column_size(NEW.tool_calls), 0) + coalesce(octet_length(NEW.tool_call_id), 0)
            + coalesce(pg_column_size(NEW.metadata), 0) + coalesce(octet_length(NEW.name), 0));
    END IF;
    -- the search index belongs to memory_ext (memory.reindex_search runs as its owner)
    IF NEW.search_vector IS DISTINCT FROM OLD.search_vector AND NOT memory._current_role_is_superuser() THEN
        RAISE EXCEPTION 'search_vector is maintained by memory_ext' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER messages_before_update BEFORE UPDATE ON memory.conversation_messages
    FOR EACH ROW EXECUTE FUNCTION memory._message_before_update();

-- One statement-level pass per DELETE (including the cascade of a deleted conversation).
-- SECURITY DEFINER: it keeps the counters (see the top of this file). It touches only the
-- conversations the deleted rows belonged to, rows RLS let the caller delete. The transition
-- table is read alone and each conversation written by its id, as in the insert checks above.
CREATE OR REPLACE FUNCTION memory._messages_after_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d record;
BEGIN
    FOR d IN
        SELECT g.conversation_id, count(*) AS n, sum(g.token_count) AS t,
               array_agg(DISTINCT (g.created_at AT TIME ZONE 'UTC')::date) AS days
          FROM gone g GROUP BY g.conversation_id
    LOOP
        UPDATE memory.conversations c
           SET message_count = c.message_count - d.n,
               total_tokens = c.total_tokens - d.t
         WHERE c.id = d.conversation_id;
        PERFORM memory._count_message_days(d.conversation_id, d.days);
    END LOOP;
    -- A deleted call takes its results with it: a result without its call is not a valid message.
    -- (Results carry no calls, so the nested DELETE's own pass stops here.)
    FOR d IN
        SELECT g.conversation_id, array_agg(call->>'id') AS calls
          FROM gone g, jsonb_array_elements(g.tool_calls) AS call
         WHERE g.tool_calls IS NOT NULL GROUP BY g.conversation_id
    LOOP
        DELETE FROM memory.conversation_messages m
         WHERE m.conversation_id = d.conversation_id AND m.tool_call_id = ANY (d.calls);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_after_delete AFTER DELETE ON memory.conversation_messages
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION memory._messages_after_delete();

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._conversation_before_insert(),
    memory._conversation_before_update(),
    memory._conversation_check_size(),
    memory._message_before_insert(),
    memory._message_before_insert_write(),
    memory._messages_statement_begin(),
    memory._messages_statement_end(),
    memory._message_take_quota(),
    memory._message_before_update(),
    memory._messages_after_insert(),
    memory._messages_after_insert_checks(),
    memory._messages_after_delete(),
    memory._notify_messages(),
    memory._count_message_days(uuid, date[]),
    memory._roll_up_message_days(integer),
    memory._tool_key_taken(text[]),
    memory._extract_facts(),
    memory._auto_reply_suppressed()
FROM PUBLIC;
