-- memory_ext 0.2.0 -> 0.3.0
--
-- What changed in the schema:
-- * memory.llm_calls: the worker writes a call's row before the call ('pending') and completes
--   it with the provider's figures afterwards; a call in flight when the worker stopped is
--   'unknown' (the provider may have billed it). The day's token counter follows both writes.
-- * the background worker answers several calls at once (memory.worker_concurrency,
--   memory.worker_user_concurrency: settings only, nothing in the schema) and is registered as
--   "memory_ext worker".
-- * memory.agents.share_config (default off): members of an agent's conversations no longer read
--   its system prompt and tools (the members' policy requires it), and reply jobs a member causes
--   are built without them.
-- * memory.chat's call is charged even when the caller's transaction rolls back: the worker
--   writes it as a 'rolled_back' row, and the daily token limit counts it meanwhile
--   (memory._pending_llm_tokens, memory._token_quota_error).
-- * memory.continue_chat checks that the caller may write the answer (and that the conversation
--   is not archived) before it calls the LLM.
-- * the bulk routes count against memory.max_messages_per_minute in memory._import_messages
--   itself (with the 100,000-message cap and the archive check), and fork_conversation counts its
--   copies (memory._take_message_quotas).
-- * memory.max_message_size bounds every value users store (memory._check_size): message
--   metadata and names, a conversation's title and metadata, templates (a new trigger).
-- * search: the lexeme naming a message's conversation holds a space, which no text can produce
--   (a message reading "conv<hex>" could pose as another conversation's); the stored messages'
--   lexemes are rewritten here, a statement over the whole messages table.
-- * memory._get_shared_conversation: a share link's expiry is checked against the clock, not the
--   reader's transaction start.
-- * a job belongs to whoever caused it (memory._enqueue_job: the requester, or the author of the
--   message that queued it), and request_summary checks the requester's daily token limit.
-- * retention: memory.retention_days is a ceiling that an agent's retention_days may only shorten
--   (memory._retention_due).
\echo Use "ALTER EXTENSION memory_ext UPDATE TO '0.3.0'" to load this file. \quit

-- Schema ------------------------------------------------------------------------------------------

ALTER TABLE memory.llm_calls DROP CONSTRAINT llm_calls_status_check;
ALTER TABLE memory.llm_calls ADD CONSTRAINT llm_calls_status_check
    CHECK (status IN ('ok', 'discarded', 'error', 'pending', 'unknown', 'rolled_back'));

-- an agent's prompt and tools are its owner's unless shared
ALTER TABLE memory.agents ADD COLUMN share_config boolean NOT NULL DEFAULT false;
DROP POLICY agents_of_readable_conversations ON memory.agents;
CREATE POLICY agents_of_readable_conversations ON memory.agents FOR SELECT
    USING (share_config AND EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.agent_id = agents.id AND c.user_id = agents.user_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                               (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));

-- the charges of rolled-back chat turns that the worker has not written yet (shared memory)
CREATE FUNCTION memory."_pending_llm_tokens"(
	"user_id" uuid /* Uuid */
) RETURNS bigint /* i64 */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_pending_llm_tokens_wrapper';
REVOKE EXECUTE ON FUNCTION memory._pending_llm_tokens(uuid) FROM PUBLIC;

DROP TRIGGER llm_calls_after_insert ON memory.llm_calls;
DROP FUNCTION memory._llm_call_after_insert();

CREATE FUNCTION memory._llm_call_after_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_today date := (now() AT TIME ZONE 'UTC')::date;
    v_tokens bigint := coalesce(NEW.total_tokens, NEW.local_prompt_tokens, 0);
BEGIN
    IF TG_OP = 'UPDATE' THEN
        v_tokens := v_tokens - coalesce(OLD.total_tokens, OLD.local_prompt_tokens, 0);
        IF v_tokens = 0 THEN
            RETURN NULL;
        END IF;
    END IF;
    INSERT INTO memory.user_usage AS u (user_id, minute_start, minute_messages, day_start, day_tokens)
    VALUES (NEW.user_id, '-infinity', 0, v_today, v_tokens)
    ON CONFLICT (user_id) DO UPDATE
       SET day_tokens = greatest(0, CASE WHEN u.day_start = excluded.day_start THEN u.day_tokens + excluded.day_tokens
                                         ELSE excluded.day_tokens END),
           day_start = excluded.day_start;
    RETURN NULL;
END $$;

CREATE TRIGGER llm_calls_after_write AFTER INSERT OR UPDATE OF total_tokens, local_prompt_tokens ON memory.llm_calls
    FOR EACH ROW EXECUTE FUNCTION memory._llm_call_after_write();
REVOKE EXECUTE ON FUNCTION memory._llm_call_after_write() FROM PUBLIC;

CREATE FUNCTION memory._take_message_quotas(p_count integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user uuid := memory.current_user_id();
    v_max integer := memory._max_messages_per_minute();
    v_minute timestamptz := date_trunc('minute', clock_timestamp());
    v_count integer;
BEGIN
    IF v_user IS NULL OR v_max <= 0 OR p_count <= 0 OR memory._caller_bypasses_rls() OR memory._in_chat_turn() THEN
        RETURN;
    END IF;
    INSERT INTO memory.user_usage AS u (user_id, minute_start, minute_messages, day_start, day_tokens)
    VALUES (v_user, v_minute, p_count, (now() AT TIME ZONE 'UTC')::date, 0)
    ON CONFLICT (user_id) DO UPDATE
       SET minute_messages = CASE WHEN u.minute_start = excluded.minute_start THEN u.minute_messages + excluded.minute_messages
                                  ELSE excluded.minute_messages END,
           minute_start = excluded.minute_start
    RETURNING u.minute_messages INTO v_count;
    IF v_count > v_max THEN
        RAISE EXCEPTION 'rate limit: % messages would make more than % in one minute; retry after %', p_count, v_max,
                        v_minute + interval '1 minute'
            USING ERRCODE = 'PT429',
                  HINT = format('Retry in %s seconds. The operator sets memory.max_messages_per_minute.',
                                ceil(extract(epoch FROM v_minute + interval '1 minute' - clock_timestamp())));
    END IF;
END $$;
REVOKE EXECUTE ON FUNCTION memory._take_message_quotas(integer) FROM PUBLIC;

CREATE FUNCTION memory._check_size(what text, bytes bigint) RETURNS void
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

CREATE FUNCTION memory._template_before_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._check_size('a template', pg_column_size(NEW.messages) + pg_column_size(NEW.metadata)
                                             + octet_length(NEW.name));
    RETURN NEW;
END $$;
REVOKE EXECUTE ON FUNCTION memory._template_before_write() FROM PUBLIC;

CREATE TRIGGER templates_before_write BEFORE INSERT OR UPDATE ON memory.conversation_templates
    FOR EACH ROW EXECUTE FUNCTION memory._template_before_write();

CREATE FUNCTION memory._conversation_check_size() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._check_size('a conversation''s title and metadata',
                               coalesce(octet_length(NEW.title), 0) + coalesce(pg_column_size(NEW.metadata), 0));
    RETURN NEW;
END $$;
REVOKE EXECUTE ON FUNCTION memory._conversation_check_size() FROM PUBLIC;

CREATE TRIGGER conversations_check_size BEFORE INSERT OR UPDATE OF title, metadata ON memory.conversations
    FOR EACH ROW EXECUTE FUNCTION memory._conversation_check_size();

-- Functions whose bodies changed --------------------------------------------------------------

CREATE OR REPLACE FUNCTION memory._enqueue_job(p_kind text, p_conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_job bigint;
BEGIN
    SELECT j.id INTO v_job FROM memory.jobs j
     WHERE j.kind = p_kind AND j.conversation_id = p_conversation_id AND j.status IN ('queued', 'running');
    IF FOUND THEN
        RETURN v_job;
    END IF;
    -- the job belongs to whoever caused it (the requester, or the author of the message that
    -- queued it): its LLM call is charged to them and counts in their share of the worker
    INSERT INTO memory.jobs (kind, conversation_id, user_id)
    SELECT p_kind, c.id, coalesce(memory.current_user_id(), c.user_id) FROM memory.conversations c WHERE c.id = p_conversation_id
    ON CONFLICT (kind, conversation_id) WHERE status IN ('queued', 'running') DO NOTHING
    RETURNING id INTO v_job;
    IF v_job IS NULL THEN  -- a concurrent request won the race
        SELECT j.id INTO v_job FROM memory.jobs j
         WHERE j.kind = p_kind AND j.conversation_id = p_conversation_id AND j.status IN ('queued', 'running');
    END IF;
    -- ids only: a hint to listeners, never content
    PERFORM pg_notify('memory_' || p_kind || '_jobs', v_job::text);
    RETURN v_job;
END $$;

CREATE OR REPLACE FUNCTION memory._request_summary(p_conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._require(p_conversation_id, 'write');
    -- a summary is an LLM call charged to the requester: refused while over the daily token limit
    PERFORM memory._raise_error(memory._caller_token_quota_error());
    RETURN memory._enqueue_job('summary', p_conversation_id);
END $$;

CREATE OR REPLACE FUNCTION memory._token_quota_error(p_user uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_max bigint := memory._max_llm_tokens_per_day();
    v_today date := (now() AT TIME ZONE 'UTC')::date;
    v_used bigint;
    v_reset timestamptz;
BEGIN
    IF p_user IS NULL OR v_max <= 0 THEN
        RETURN NULL;
    END IF;
    SELECT u.day_tokens INTO v_used FROM memory.user_usage u WHERE u.user_id = p_user AND u.day_start = v_today;
    -- with the calls of rolled-back turns that the worker has not written yet
    v_used := coalesce(v_used, 0) + memory._pending_llm_tokens(p_user);
    IF v_used < v_max THEN
        RETURN NULL;
    END IF;
    v_reset := (v_today + 1)::timestamp AT TIME ZONE 'UTC';
    RETURN jsonb_build_object(
        'sqlstate', 'PT429',
        'message', format('daily LLM token limit reached: %s of %s tokens used today (UTC); retry after %s', v_used, v_max, v_reset),
        'hint', format('Retry in %s seconds. The operator sets memory.max_llm_tokens_per_day.',
                       ceil(extract(epoch FROM v_reset - clock_timestamp()))));
END $$;

CREATE OR REPLACE FUNCTION memory.continue_chat(conversation_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._start_turn($1);
    PERFORM memory._require($1, 'write');
    IF (SELECT c.archived_at FROM memory.conversations c WHERE c.id = $1) IS NOT NULL THEN
        RAISE EXCEPTION 'conversation % is archived', $1
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'memory.unarchive_conversation(id) reopens it.';
    END IF;
    RETURN memory._finish_turn(memory._chat_answer($1));
END $$;

CREATE OR REPLACE FUNCTION memory._message_before_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_encoding text;
    v_archived timestamptz;
    v_writable boolean;
BEGIN
    IF NEW.conversation_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- The rule, as the caller: a role that bypasses RLS (a backend's service role) may write
    -- anywhere, everyone else where the authorization rule says (owner and editors). A
    -- conversation the caller cannot see is reported exactly like one that does not exist, before
    -- anything is locked or counted; a viewer learns it may not write.
    SELECT c.encoding, c.archived_at,
           NOT row_security_active('memory.conversations')
           OR memory._can_write_row(c.id, c.user_id, memory.current_user_id(), memory._shared_with(memory.current_user_id(), true))
      INTO v_encoding, v_archived, v_writable
      FROM memory.conversations c
     WHERE c.id = NEW.conversation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', NEW.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT v_writable THEN
        RAISE EXCEPTION 'conversation % is shared with you read-only', NEW.conversation_id
            USING ERRCODE = 'insufficient_privilege', HINT = 'Its owner can make you an editor.';
    END IF;
    IF v_archived IS NOT NULL THEN
        RAISE EXCEPTION 'conversation % is archived', NEW.conversation_id
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'memory.unarchive_conversation(id) reopens it.';
    END IF;
    -- the caller's messages-per-minute limit (PT429), when one is set
    IF memory._message_limit_applies() THEN
        PERFORM memory._take_message_quota();
    END IF;
    -- cheap size checks before any parsing or counting
    PERFORM memory._check_message_limits(
        octet_length(NEW.content) + coalesce(pg_column_size(NEW.tool_calls), 0) + coalesce(octet_length(NEW.tool_call_id), 0)
        + coalesce(pg_column_size(NEW.metadata), 0) + coalesce(octet_length(NEW.name), 0),
        CASE WHEN jsonb_typeof(NEW.tool_calls) = 'array' THEN jsonb_array_length(NEW.tool_calls) END);
    -- validates role, name, tool_calls and tool_call_id, and counts what build_context will emit
    NEW.token_count := memory.message_tokens(NEW.role, NEW.content, NEW.tool_calls, NEW.name, v_encoding, NEW.tool_call_id);
    NEW.search_vector := memory._search_vector(memory._search_config()::regconfig, NEW.conversation_id, NEW.content, NEW.tool_calls);
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION memory._message_before_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (NEW.id, NEW.conversation_id, NEW.seq, NEW.role, NEW.content, NEW.name, NEW.tool_calls::text,
        NEW.tool_call_id, NEW.token_count, NEW.created_at, NEW.idempotency_key)
       IS DISTINCT FROM
       (OLD.id, OLD.conversation_id, OLD.seq, OLD.role, OLD.content, OLD.name, OLD.tool_calls::text,
        OLD.tool_call_id, OLD.token_count, OLD.created_at, OLD.idempotency_key) THEN
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

CREATE OR REPLACE FUNCTION memory._import_messages(p_conversation_id uuid, p_messages jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET session_replication_role = replica AS $$
DECLARE
    v_encoding text;
    v_config   regconfig := memory._search_config()::regconfig;
BEGIN
    SELECT c.encoding INTO v_encoding FROM memory.conversations c
     WHERE c.id = p_conversation_id AND c.user_id = memory.current_user_id() AND c.last_seq = 0
       AND c.archived_at IS NULL
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % is not an empty, open conversation of the caller', p_conversation_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- the cap and the per-minute limit are checked here, so that no route to this function skips them
    IF jsonb_typeof(p_messages) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'messages must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_array_length(p_messages) > 100000 THEN
        RAISE EXCEPTION 'an import holds at most 100000 messages, got %', jsonb_array_length(p_messages)
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Import the rest with add_message.';
    END IF;
    PERFORM memory._take_message_quotas(jsonb_array_length(p_messages));
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_messages) AS t(e)
                WHERE jsonb_typeof(t.e) <> 'object' OR jsonb_typeof(t.e->'content') NOT IN ('string', 'null')) THEN
        RAISE EXCEPTION 'a message must be an object whose content is a string' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM memory._check_message_limits(
                octet_length(coalesce(t.e->>'content', '')) + coalesce(pg_column_size(nullif(t.e->'tool_calls', 'null')), 0)
                + coalesce(octet_length(t.e->>'tool_call_id'), 0)
                + coalesce(pg_column_size(nullif(t.e->'metadata', 'null')), 0) + coalesce(octet_length(t.e->>'name'), 0),
                CASE WHEN jsonb_typeof(t.e->'tool_calls') = 'array' THEN jsonb_array_length(t.e->'tool_calls') END)
       FROM jsonb_array_elements(p_messages) AS t(e);
    IF EXISTS (
        WITH calls AS (
            SELECT call->>'id' AS id, t.n, call ? 'function' AS openai
              FROM jsonb_array_elements(p_messages) WITH ORDINALITY AS t(e, n),
                   jsonb_array_elements(CASE WHEN jsonb_typeof(t.e->'tool_calls') = 'array' THEN t.e->'tool_calls' ELSE '[]' END) AS call),
        results AS (
            SELECT t.e->>'tool_call_id' AS id, t.n
              FROM jsonb_array_elements(p_messages) WITH ORDINALITY AS t(e, n)
             WHERE t.e->>'role' = 'tool')
        SELECT 1 FROM calls GROUP BY id HAVING count(*) > 1
        UNION ALL
        SELECT 1 FROM results r LEFT JOIN calls c ON c.id = r.id AND c.openai AND c.n < r.n WHERE c.id IS NULL
        UNION ALL
        SELECT 1 FROM results GROUP BY id HAVING count(*) > 1) THEN
        RAISE EXCEPTION 'a tool call id used twice, or a tool result without an earlier call or answered twice'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO memory.conversation_messages
          (conversation_id, seq, role, content, name, tool_calls, tool_call_id, token_count, metadata, created_at,
           idempotency_key, search_vector)
    SELECT p_conversation_id, t.n, t.e->>'role', coalesce(t.e->>'content', ''), t.e->>'name', nullif(t.e->'tool_calls', 'null'),
           t.e->>'tool_call_id',
           memory.message_tokens(t.e->>'role', coalesce(t.e->>'content', ''), nullif(t.e->'tool_calls', 'null'),
                                 t.e->>'name', v_encoding, t.e->>'tool_call_id'),
           nullif(t.e->'metadata', 'null'), coalesce((t.e->>'created_at')::timestamptz, now()), t.e->>'idempotency_key',
           memory._search_vector(v_config, p_conversation_id, coalesce(t.e->>'content', ''), nullif(t.e->'tool_calls', 'null'))
      FROM jsonb_array_elements(p_messages) WITH ORDINALITY AS t(e, n)
     ORDER BY t.n;
    UPDATE memory.conversations c
       SET message_count = x.n, total_tokens = x.t, last_seq = x.n, updated_at = now()
      FROM (SELECT count(*) AS n, coalesce(sum(m.token_count), 0) AS t
              FROM memory.conversation_messages m WHERE m.conversation_id = p_conversation_id) x
     WHERE c.id = p_conversation_id;
END $$;

CREATE OR REPLACE FUNCTION memory._append_all(p_conversation_id uuid, p_messages jsonb, p_what text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_bulk  boolean;
    v_i     integer := -1;
    v_m     jsonb;
    v_state text;
    v_text  text;
    v_hint  text;
BEGIN
    BEGIN
        PERFORM memory._import_messages(p_conversation_id, p_messages);
        v_bulk := true;
    EXCEPTION WHEN OTHERS THEN
        v_bulk := false;
    END;
    IF v_bulk THEN
        RETURN;
    END IF;
    BEGIN
        FOR v_m IN SELECT e FROM jsonb_array_elements(p_messages) AS e LOOP
            v_i := v_i + 1;
            IF jsonb_typeof(v_m) <> 'object' OR jsonb_typeof(v_m->'content') NOT IN ('string', 'null') THEN
                RAISE EXCEPTION 'a message must be an object whose content is a string'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            INSERT INTO memory.conversation_messages
                (conversation_id, role, content, name, tool_calls, tool_call_id, metadata, created_at, idempotency_key, seq, token_count)
            VALUES (p_conversation_id, v_m->>'role', coalesce(v_m->>'content', ''), v_m->>'name', nullif(v_m->'tool_calls', 'null'),
                    v_m->>'tool_call_id', nullif(v_m->'metadata', 'null'), (v_m->>'created_at')::timestamptz,
                    v_m->>'idempotency_key', 0, 0);
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_text = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        IF v_state IN ('22P02', '22007', '22008') THEN
            v_state := '22023';
        END IF;
        RAISE EXCEPTION 'message % of the %: %', v_i, p_what, v_text
            USING ERRCODE = v_state, HINT = coalesce(nullif(v_hint, ''), 'Nothing was written.');
    END;
END $$;

CREATE OR REPLACE FUNCTION memory._fork_conversation(p_source uuid, p_at bigint, p_title text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET session_replication_role = replica AS $$
DECLARE
    v_user uuid := memory.current_user_id();
    v_src  memory.conversations;
    v_at   bigint := p_at;
    v_cut  text;
    v_id   uuid := gen_random_uuid();
    -- the copies keep their words; their conversation's lexeme is the new one's
    v_from text := memory._conversation_lexeme(p_source);
    v_to   text[] := ARRAY[memory._conversation_lexeme(v_id)];
BEGIN
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'no user identity: memory.current_user_id() is NULL' USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM memory._require(p_source, 'read');
    -- KEY SHARE: the source cannot be deleted under the copy; appends may go on (the copy ends at v_at)
    SELECT c.* INTO v_src FROM memory.conversations c WHERE c.id = p_source FOR KEY SHARE;
    v_at := coalesce(v_at, v_src.last_seq);
    IF v_at < 0 OR v_at > v_src.last_seq THEN
        RAISE EXCEPTION 'at_seq % is outside the conversation (0..%)', v_at, v_src.last_seq
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the copies count against the caller's per-minute limit like appends
    PERFORM memory._take_message_quotas(v_at::integer);
    v_cut := memory._tool_group_cut(p_source, v_at);
    IF v_cut IS NOT NULL THEN
        RAISE EXCEPTION 'cannot fork at seq %: %', v_at, v_cut
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Fork before the tool call or after its last result: a call is kept with its results.';
    END IF;
    INSERT INTO memory.conversations (id, agent_id, user_id, title, encoding, total_tokens, message_count, last_seq,
                                      metadata, created_at, updated_at)
    VALUES (v_id, v_src.agent_id, v_user, coalesce(p_title, v_src.title), v_src.encoding, 0, 0, 0,
            v_src.metadata || jsonb_build_object('forked_from', jsonb_build_object('conversation_id', p_source, 'at_seq', v_at)),
            now(), now());
    WITH copied AS (
        INSERT INTO memory.conversation_messages
              (id, conversation_id, seq, role, content, name, tool_calls, tool_call_id, token_count, metadata,
               created_at, idempotency_key, search_vector)
        SELECT gen_random_uuid(), v_id, row_number() OVER (ORDER BY m.seq), m.role, m.content, m.name, m.tool_calls,
               m.tool_call_id, m.token_count, m.metadata, m.created_at, m.idempotency_key,
               ts_delete(m.search_vector, v_from) || array_to_tsvector(v_to)
          FROM memory.conversation_messages m
         WHERE m.conversation_id = p_source AND m.seq <= v_at
        RETURNING token_count)
    UPDATE memory.conversations c
       SET message_count = x.n, total_tokens = x.t, last_seq = x.n
      FROM (SELECT count(*) AS n, coalesce(sum(token_count), 0) AS t FROM copied) x
     WHERE c.id = v_id;
    -- the summaries that cover no more than the fork, renumbered like the messages
    INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, token_count, covered_tokens,
                                               model, created_at)
    SELECT v_id, k.n, s.content, s.token_count, k.t, s.model, s.created_at
      FROM memory.conversation_summaries s
      CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(m.token_count), 0) AS t
                            FROM memory.conversation_messages m
                           WHERE m.conversation_id = p_source AND m.seq <= s.covers_through_seq) k
     WHERE s.conversation_id = p_source AND s.covers_through_seq <= v_at
     ORDER BY s.id;
    RETURN v_id;
END $$;

CREATE OR REPLACE FUNCTION memory._conversation_lexeme(conversation_id uuid) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'conv ' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.uuid_send($1), 'hex')
$$;

CREATE OR REPLACE FUNCTION memory._search_hits(p_query tsquery, p_conversation_id uuid, p_agent_id uuid, p_role text,
                                    p_since timestamptz, p_until timestamptz, p_tool text, p_has_tool_calls boolean,
                                    p_limit integer, p_rank real, p_after uuid)
RETURNS TABLE (id uuid, conversation_id uuid, seq bigint, role text, created_at timestamptz, content text,
               tool_calls jsonb, rank real)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me     uuid := memory.current_user_id();
    v_all    boolean := memory._caller_bypasses_rls();
    v_shared uuid[] := memory._shared_with(v_me, false);
    v_match  tsquery := p_query;
    v_scope  tsquery;
BEGIN
    IF NOT v_all OR p_conversation_id IS NOT NULL OR p_agent_id IS NOT NULL THEN
        -- quoted: the lexemes hold a space (see memory._conversation_lexeme)
        SELECT string_agg('''' || memory._conversation_lexeme(c.id) || '''', ' | ')::tsquery INTO v_scope
          FROM memory.conversations c
         WHERE (v_all OR c.user_id = v_me OR c.id = ANY (v_shared))
           AND (p_conversation_id IS NULL OR c.id = p_conversation_id)
           AND (p_agent_id IS NULL OR c.agent_id = p_agent_id);
        IF v_scope IS NULL THEN
            RETURN;
        END IF;
        v_match := p_query && v_scope;
    END IF;
    RETURN QUERY
        SELECT h.* FROM (
            SELECT m.id, m.conversation_id, m.seq, m.role, m.created_at, m.content, m.tool_calls,
                   -- every hit is ranked before the page is cut: ts_rank (term frequency, damped
                   -- by 1 + log of the message's length) costs less than half of ts_rank_cd
                   -- (cover density) per hit, which is what a common word's search spends
                   ts_rank(m.search_vector, p_query, 1) AS rank
              FROM memory.conversation_messages m
             WHERE m.search_vector @@ v_match
               AND (p_role IS NULL OR m.role = p_role)
               AND (p_since IS NULL OR m.created_at >= p_since)
               AND (p_until IS NULL OR m.created_at < p_until)
               AND (p_has_tool_calls IS NULL OR (m.tool_calls IS NOT NULL) = p_has_tool_calls)
               AND (p_tool IS NULL OR m.tool_calls @> jsonb_build_array(jsonb_build_object('function', jsonb_build_object('name', p_tool)))
                                   OR m.tool_calls @> jsonb_build_array(jsonb_build_object('tool', p_tool)))) h
         WHERE p_rank IS NULL OR h.rank < p_rank OR (h.rank = p_rank AND h.id > p_after)
         ORDER BY h.rank DESC, h.id
         LIMIT p_limit + 1;
END $$;

CREATE OR REPLACE FUNCTION memory._get_shared_conversation(token text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_link memory.share_links;
    v_conv memory.conversations;
BEGIN
    SELECT l.* INTO v_link FROM memory.share_links l
     WHERE l.token_hash = sha256(convert_to(left(coalesce($1, ''), 200), 'UTF8'))
       AND l.revoked_at IS NULL AND (l.expires_at IS NULL OR l.expires_at > clock_timestamp());
    IF NOT FOUND THEN
        RAISE EXCEPTION 'share link is not valid' USING ERRCODE = 'no_data_found';
    END IF;
    SELECT c.* INTO v_conv FROM memory.conversations c WHERE c.id = v_link.conversation_id;
    RETURN memory._export_json(v_conv, v_link.up_to_seq);
END $$;

CREATE OR REPLACE FUNCTION memory._retention_due(days integer)
RETURNS TABLE (conversation_id uuid, user_id uuid, title text, updated_at timestamptz, message_count integer,
               retention_days integer)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.id, c.user_id, c.title, c.updated_at, c.message_count, d.days
      FROM memory.conversations c
      -- an agent applies to its owner's conversations only (see agents.sql)
      LEFT JOIN memory.agents a ON a.id = c.agent_id AND a.user_id = c.user_id
     -- the operator's period is a ceiling: an agent may only shorten it (0 or NULL: the operator's);
     -- with no operator period, the agent's own applies
     CROSS JOIN LATERAL (SELECT coalesce(least(nullif(a.retention_days, 0), nullif($1, 0)), 0) AS days) d
     WHERE d.days > 0 AND c.updated_at < now() - make_interval(days => d.days);
$$;

-- Data --------------------------------------------------------------------------------------------

-- every stored message's conversation lexeme in the new, unforgeable form
UPDATE memory.conversation_messages m
   SET search_vector = ts_delete(m.search_vector, 'conv' || encode(uuid_send(m.conversation_id), 'hex'))
                       || array_to_tsvector(ARRAY[memory._conversation_lexeme(m.conversation_id)])
 WHERE m.search_vector IS NOT NULL;
