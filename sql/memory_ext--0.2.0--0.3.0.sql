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
-- * consent: a transfer is an offer (memory.conversation_transfers) that the recipient accepts or
--   declines (accept_transfer, decline_transfer, list_transfer_offers); shares beyond
--   memory.max_unrequested_shares from one owner wait as offers (conversation_members.accepted_at
--   NULL; accept_shares, decline_shares, list_share_offers). Existing memberships are accepted.
-- * messages have an author (conversation_messages.author_id, set by the insert trigger from the
--   caller's identity): usage_daily counts messages for their author, erase_user removes what a
--   user wrote in others' conversations. Messages stored before 0.3.0 have no author.
-- * search: each message's vector also names its conversation's owner (memory._owner_lexeme), so
--   a search costs the same however many conversations the caller has; shared conversations are
--   searched through their owners' lexemes. list_conversations runs as the owner
--   (memory._list_conversations): its sources are the read rule itself, and under RLS a page of
--   a user with many conversations sorted all of them, and every shared row was checked against
--   the caller's whole list of shared conversations.
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

-- consent: shares beyond memory.max_unrequested_shares wait for their recipient; those made so
-- far were in effect, and stay so
ALTER TABLE memory.conversation_members ADD COLUMN accepted_at timestamptz;
UPDATE memory.conversation_members SET accepted_at = created_at;
CREATE INDEX conversation_members_accepted_idx ON memory.conversation_members (user_id) WHERE accepted_at IS NOT NULL;

CREATE TABLE memory.conversation_transfers (
    conversation_id uuid PRIMARY KEY REFERENCES memory.conversations (id) ON DELETE CASCADE,
    from_user_id    uuid NOT NULL,
    to_user_id      uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversation_transfers_to_idx ON memory.conversation_transfers (to_user_id, created_at);
CREATE INDEX conversation_transfers_from_idx ON memory.conversation_transfers (from_user_id, created_at);
SELECT pg_catalog.pg_extension_config_dump('memory.conversation_transfers', '');
ALTER TABLE memory.conversation_transfers ENABLE ROW LEVEL SECURITY;
CREATE POLICY transfers_visible ON memory.conversation_transfers FOR SELECT
    USING (from_user_id = (SELECT memory.current_user_id()) OR to_user_id = (SELECT memory.current_user_id()));
GRANT SELECT ON memory.conversation_transfers TO PUBLIC;

-- who wrote each message (NULL for those stored before)
ALTER TABLE memory.conversation_messages ADD COLUMN author_id uuid;

-- the owner's search lexeme
DROP FUNCTION memory._search_vector(regconfig, uuid, text, jsonb);
CREATE OR REPLACE FUNCTION memory._owner_lexeme(user_id uuid) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'user ' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.uuid_send($1), 'hex')
$$;

CREATE OR REPLACE FUNCTION memory._search_vector(config regconfig, conversation_id uuid, owner uuid, content text, tool_calls jsonb)
RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_calls text;
BEGIN
    IF $1 IS NULL THEN  -- memory.search_config = 'off'
        RETURN NULL;
    END IF;
    IF jsonb_typeof($5) = 'array' THEN
        SELECT string_agg(concat_ws(' ', c.call->'function'->>'name', c.call->'function'->>'arguments', c.call->>'tool',
                                    c.call->>'input', c.call->>'output'), ' ')
          INTO v_calls FROM jsonb_array_elements($5) AS c(call);
    END IF;
    RETURN to_tsvector($1, left(concat_ws(' ', $4, v_calls), 200000))
           || array_to_tsvector(ARRAY[memory._conversation_lexeme($2), memory._owner_lexeme($3)]);
END;
$$;


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
    v_owner    uuid;
    v_me       uuid := memory.current_user_id();
BEGIN
    IF NEW.conversation_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- The rule, as the caller: a role that bypasses RLS (a backend's service role) may write
    -- anywhere, everyone else where the authorization rule says (owner and editors). A
    -- conversation the caller cannot see is reported exactly like one that does not exist, before
    -- anything is locked or counted; a viewer learns it may not write.
    SELECT c.encoding, c.archived_at, c.user_id,
           NOT row_security_active('memory.conversations')
           OR memory._can_write_row(c.id, c.user_id, v_me, memory._shared_with(v_me, true))
      INTO v_encoding, v_archived, v_owner, v_writable
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
    NEW.search_vector := memory._search_vector(memory._search_config()::regconfig, NEW.conversation_id, v_owner, NEW.content, NEW.tool_calls);
    -- the author is whoever appends, never a value the caller supplies
    NEW.author_id := v_me;
    RETURN NEW;
END $$;

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

CREATE OR REPLACE FUNCTION memory._import_messages(p_conversation_id uuid, p_messages jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET session_replication_role = replica AS $$
DECLARE
    v_encoding text;
    v_config   regconfig := memory._search_config()::regconfig;
    v_me       uuid := memory.current_user_id();
BEGIN
    SELECT c.encoding INTO v_encoding FROM memory.conversations c
     WHERE c.id = p_conversation_id AND c.user_id = v_me AND c.last_seq = 0
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
           idempotency_key, search_vector, author_id)
    SELECT p_conversation_id, t.n, t.e->>'role', coalesce(t.e->>'content', ''), t.e->>'name', nullif(t.e->'tool_calls', 'null'),
           t.e->>'tool_call_id',
           memory.message_tokens(t.e->>'role', coalesce(t.e->>'content', ''), nullif(t.e->'tool_calls', 'null'),
                                 t.e->>'name', v_encoding, t.e->>'tool_call_id'),
           nullif(t.e->'metadata', 'null'), coalesce((t.e->>'created_at')::timestamptz, now()), t.e->>'idempotency_key',
           memory._search_vector(v_config, p_conversation_id, v_me, coalesce(t.e->>'content', ''),
                                 nullif(t.e->'tool_calls', 'null')),
           v_me
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
    -- the copies keep their words and their authors; their conversation's and owner's lexemes are
    -- the new one's
    v_from text[];
    v_to   text[] := ARRAY[memory._conversation_lexeme(v_id), memory._owner_lexeme(v_user)];
BEGIN
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'no user identity: memory.current_user_id() is NULL' USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM memory._require(p_source, 'read');
    -- KEY SHARE: the source cannot be deleted under the copy; appends may go on (the copy ends at v_at)
    SELECT c.* INTO v_src FROM memory.conversations c WHERE c.id = p_source FOR KEY SHARE;
    v_from := ARRAY[memory._conversation_lexeme(p_source), memory._owner_lexeme(v_src.user_id)];
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
               created_at, idempotency_key, search_vector, author_id)
        SELECT gen_random_uuid(), v_id, row_number() OVER (ORDER BY m.seq), m.role, m.content, m.name, m.tool_calls,
               m.tool_call_id, m.token_count, m.metadata, m.created_at, m.idempotency_key,
               ts_delete(m.search_vector, v_from) || array_to_tsvector(v_to), m.author_id
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
-- a few pages at most: the planner joins them to conversations by id (not a scan of them all)
LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 100 SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me     uuid := memory.current_user_id();
    v_all    boolean := memory._caller_bypasses_rls();
    v_shared uuid[];
    v_scopes tsquery[];      -- one GIN scan each (NULL: no scope, for a role that bypasses RLS)
    v_agent  uuid[];
    v_i      integer;
BEGIN
    IF v_me IS NULL AND NOT v_all THEN
        RETURN;
    END IF;
    IF p_conversation_id IS NOT NULL THEN
        -- one conversation: its own lexeme, when the caller may read it
        IF NOT (v_all OR memory.can_read(p_conversation_id))
           OR (p_agent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.conversations c
                                                       WHERE c.id = p_conversation_id AND c.agent_id = p_agent_id)) THEN
            RETURN;
        END IF;
        v_scopes := ARRAY[quote_literal(memory._conversation_lexeme(p_conversation_id))::tsquery];
    ELSIF v_all THEN
        v_scopes := ARRAY[NULL::tsquery];
        IF p_agent_id IS NOT NULL THEN
            SELECT array_agg(c.id) INTO v_agent FROM memory.conversations c WHERE c.agent_id = p_agent_id;
        END IF;
    ELSE
        v_shared := memory._shared_with(v_me, false);
        -- the caller's own conversations, then the owners of those shared with it, 50 to a scan
        SELECT ARRAY[quote_literal(memory._owner_lexeme(v_me))::tsquery]
               || coalesce(array_agg(g.q ORDER BY g.k), '{}')
          INTO v_scopes
          FROM (SELECT o.k, string_agg(quote_literal(memory._owner_lexeme(o.owner_id)), ' | ')::tsquery AS q
                  FROM (SELECT d.owner_id, (row_number() OVER (ORDER BY d.owner_id) - 1) / 50 AS k
                          FROM (SELECT DISTINCT m.owner_id FROM memory.conversation_members m
                                 WHERE m.user_id = v_me AND m.accepted_at IS NOT NULL) d) o
                 GROUP BY o.k) g;
        IF p_agent_id IS NOT NULL THEN
            SELECT array_agg(x.id) INTO v_agent
              FROM (SELECT c.id FROM memory.conversations c WHERE c.user_id = v_me AND c.agent_id = p_agent_id
                    UNION ALL
                    SELECT c.id FROM unnest(v_shared) AS s(id) JOIN memory.conversations c ON c.id = s.id
                     WHERE c.agent_id = p_agent_id) x;
        END IF;
    END IF;
    IF p_agent_id IS NOT NULL AND p_conversation_id IS NULL AND v_agent IS NULL THEN
        RETURN;
    END IF;
    FOR v_i IN 1 .. cardinality(v_scopes) LOOP
        RETURN QUERY
            SELECT h.* FROM (
                SELECT m.id, m.conversation_id, m.seq, m.role, m.created_at, m.content, m.tool_calls,
                       -- every hit is ranked before the page is cut: ts_rank (term frequency, damped
                       -- by 1 + log of the message's length) costs less than half of ts_rank_cd
                       -- (cover density) per hit, which is what a common word's search spends
                       ts_rank(m.search_vector, p_query, 1) AS rank
                  FROM memory.conversation_messages m
                 WHERE m.search_vector @@ CASE WHEN v_scopes[v_i] IS NULL THEN p_query ELSE p_query && v_scopes[v_i] END
                   -- an owner's scan (after the caller's own) keeps the conversations shared with the caller
                   AND (v_i = 1 OR v_all OR p_conversation_id IS NOT NULL
                        OR m.conversation_id IN (SELECT s.id FROM unnest(v_shared) AS s(id)))
                   AND (v_agent IS NULL OR m.conversation_id IN (SELECT a.id FROM unnest(v_agent) AS a(id)))
                   AND (p_role IS NULL OR m.role = p_role)
                   AND (p_since IS NULL OR m.created_at >= p_since)
                   AND (p_until IS NULL OR m.created_at < p_until)
                   AND (p_has_tool_calls IS NULL OR (m.tool_calls IS NOT NULL) = p_has_tool_calls)
                   AND (p_tool IS NULL OR m.tool_calls @> jsonb_build_array(jsonb_build_object('function', jsonb_build_object('name', p_tool)))
                                       OR m.tool_calls @> jsonb_build_array(jsonb_build_object('tool', p_tool)))) h
             WHERE p_rank IS NULL OR h.rank < p_rank OR (h.rank = p_rank AND h.id > p_after)
             ORDER BY h.rank DESC, h.id
             LIMIT p_limit + 1;
    END LOOP;
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

CREATE OR REPLACE FUNCTION memory._shared_with(caller uuid, editors_only boolean) RETURNS uuid[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(m.conversation_id), '{}')
      FROM memory.conversation_members m
     WHERE m.user_id = $1 AND m.accepted_at IS NOT NULL AND (NOT $2 OR m.role = 'editor');
$$;

CREATE OR REPLACE FUNCTION memory._share_conversation(conversation_id uuid, user_id uuid, role text)
RETURNS memory.conversation_members
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_owner uuid;
    v_row   memory.conversation_members;
    v_cap   integer;
BEGIN
    IF $1 IS NULL OR $2 IS NULL OR $3 IS NULL THEN
        RAISE EXCEPTION 'conversation_id, user_id and role must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF $3 NOT IN ('viewer', 'editor') THEN
        RAISE EXCEPTION 'unknown member role "%"', left($3, 80)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use viewer or editor.';
    END IF;
    PERFORM memory._require($1, 'manage');
    -- the conversation's lock: shares and unshares of one conversation serialise, and the count holds
    SELECT c.user_id INTO v_owner FROM memory.conversations c WHERE c.id = $1 FOR NO KEY UPDATE;
    IF $2 = v_owner THEN
        RAISE EXCEPTION 'user % owns conversation %: an owner is not a member', $2, $1 USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT count(*) FROM memory.conversation_members m WHERE m.conversation_id = $1 AND m.user_id <> $2) >= 1000 THEN
        RAISE EXCEPTION 'conversation % already has 1000 members', $1 USING ERRCODE = 'program_limit_exceeded';
    END IF;
    -- the recipient's memberships from this owner, counted up to the setting (an index range); read
    -- here, after _require has loaded the library that defines the setting
    v_cap := current_setting('memory.max_unrequested_shares')::integer;
    INSERT INTO memory.conversation_members AS m (conversation_id, user_id, role, owner_id, accepted_at)
    VALUES ($1, $2, $3, v_owner,
            CASE WHEN (SELECT count(*) FROM (SELECT 1 FROM memory.conversation_members m
                                              WHERE m.user_id = $2 AND m.owner_id = v_owner LIMIT v_cap) x) < v_cap
                 THEN now() END)
    ON CONFLICT ON CONSTRAINT conversation_members_pkey DO UPDATE SET role = excluded.role
    RETURNING m.* INTO v_row;
    RETURN v_row;
END $$;

CREATE OR REPLACE FUNCTION memory._identity() RETURNS uuid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me uuid := memory.current_user_id();
BEGIN
    IF v_me IS NULL THEN
        RAISE EXCEPTION 'no user identity: memory.current_user_id() is NULL' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN v_me;
END $$;

CREATE OR REPLACE FUNCTION memory.list_share_offers()
RETURNS TABLE (from_user_id uuid, offers bigint, oldest timestamptz, newest timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.owner_id, count(*), min(m.created_at), max(m.created_at)
      FROM memory.conversation_members m
     WHERE m.user_id = memory._identity() AND m.accepted_at IS NULL
     GROUP BY m.owner_id
     ORDER BY max(m.created_at) DESC, m.owner_id;
$$;

CREATE OR REPLACE FUNCTION memory._accept_shares(from_user_id uuid, conversation_id uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me uuid := memory._identity();
    v_n  integer;
BEGIN
    IF ($1 IS NULL) = ($2 IS NULL) THEN
        RAISE EXCEPTION 'give either from_user_id or conversation_id' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE memory.conversation_members m SET accepted_at = now()
     WHERE m.user_id = v_me AND m.accepted_at IS NULL
       AND ($1 IS NULL OR m.owner_id = $1) AND ($2 IS NULL OR m.conversation_id = $2);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

CREATE OR REPLACE FUNCTION memory.accept_shares(from_user_id uuid DEFAULT NULL, conversation_id uuid DEFAULT NULL) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._accept_shares($1, $2);
$$;

CREATE OR REPLACE FUNCTION memory._decline_shares(from_user_id uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me uuid := memory._identity();
    v_n  integer;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'from_user_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    DELETE FROM memory.conversation_members m WHERE m.user_id = v_me AND m.owner_id = $1;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

CREATE OR REPLACE FUNCTION memory.decline_shares(from_user_id uuid) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._decline_shares($1);
$$;

CREATE OR REPLACE FUNCTION memory._transfer_conversation(conversation_id uuid, user_id uuid) RETURNS memory.conversations
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_owner uuid;
    v_row   memory.conversations;
BEGIN
    IF $1 IS NULL OR $2 IS NULL THEN
        RAISE EXCEPTION 'conversation_id and user_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM memory._require($1, 'manage');
    SELECT c.* INTO v_row FROM memory.conversations c WHERE c.id = $1 FOR NO KEY UPDATE;
    v_owner := v_row.user_id;
    IF $2 = v_owner OR $2 = '00000000-0000-0000-0000-000000000000' THEN
        RAISE EXCEPTION 'cannot transfer conversation % to user %', $1, $2
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE WHEN $2 = v_owner THEN 'That user already owns it.' ELSE 'The nil uuid is no user.' END;
    END IF;
    IF (SELECT count(*) FROM memory.conversation_transfers t WHERE t.from_user_id = v_owner AND t.conversation_id <> $1) >= 100 THEN
        RAISE EXCEPTION 'user % already offers 100 conversations', v_owner
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Offers end when accepted or declined; memory.decline_transfer withdraws one.';
    END IF;
    INSERT INTO memory.conversation_transfers AS t (conversation_id, from_user_id, to_user_id)
    VALUES ($1, v_owner, $2)
    ON CONFLICT ON CONSTRAINT conversation_transfers_pkey DO UPDATE SET from_user_id = excluded.from_user_id, to_user_id = excluded.to_user_id,
                                                created_at = now();
    RETURN v_row;
END $$;

CREATE OR REPLACE FUNCTION memory._list_transfer_offers()
RETURNS TABLE (conversation_id uuid, from_user_id uuid, to_user_id uuid, title text, message_count integer,
               total_tokens bigint, members jsonb, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.conversation_id, t.from_user_id, t.to_user_id, c.title, c.message_count, c.total_tokens,
           (SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', m.user_id, 'role', m.role) ORDER BY m.created_at, m.user_id), '[]')
              FROM memory.conversation_members m WHERE m.conversation_id = t.conversation_id AND m.accepted_at IS NOT NULL),
           t.created_at
      FROM memory.conversation_transfers t JOIN memory.conversations c ON c.id = t.conversation_id
     WHERE memory._identity() IN (t.from_user_id, t.to_user_id)
     ORDER BY t.created_at DESC, t.conversation_id;
$$;

CREATE OR REPLACE FUNCTION memory.list_transfer_offers() RETURNS TABLE (conversation_id uuid, from_user_id uuid, to_user_id uuid, title text, message_count integer,
               total_tokens bigint, members jsonb, created_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._list_transfer_offers();
$$;

CREATE OR REPLACE FUNCTION memory._accept_transfer(conversation_id uuid) RETURNS memory.conversations
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me     uuid := memory._identity();
    v_offer  memory.conversation_transfers;
    v_row    memory.conversations;
    v_config regconfig := memory._search_config()::regconfig;
BEGIN
    -- the offer first: nobody else may take the conversation's lock (an aborted transaction holds
    -- its locks until it ends)
    IF NOT EXISTS (SELECT 1 FROM memory.conversation_transfers t WHERE t.conversation_id = $1 AND t.to_user_id = v_me) THEN
        RAISE EXCEPTION 'no transfer of conversation % is offered to you', coalesce($1::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    SELECT c.* INTO v_row FROM memory.conversations c WHERE c.id = $1 FOR NO KEY UPDATE;
    SELECT t.* INTO v_offer FROM memory.conversation_transfers t WHERE t.conversation_id = $1 AND t.to_user_id = v_me;
    -- an offer made by someone who no longer owns the conversation is void
    IF v_offer.conversation_id IS NULL OR v_row.user_id IS DISTINCT FROM v_offer.from_user_id THEN
        RAISE EXCEPTION 'no transfer of conversation % is offered to you', coalesce($1::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    DELETE FROM memory.conversation_transfers t WHERE t.conversation_id = $1;
    DELETE FROM memory.conversation_members m WHERE m.conversation_id = $1 AND m.user_id = v_me;
    UPDATE memory.conversation_members m SET owner_id = v_me WHERE m.conversation_id = $1;
    INSERT INTO memory.conversation_members (conversation_id, user_id, role, owner_id, accepted_at)
    VALUES ($1, v_offer.from_user_id, 'editor', v_me, now());
    UPDATE memory.conversations c SET user_id = v_me WHERE c.id = $1 RETURNING c.* INTO v_row;
    UPDATE memory.conversation_messages m
       SET search_vector = memory._search_vector(v_config, m.conversation_id, v_me, m.content, m.tool_calls)
     WHERE m.conversation_id = $1;
    RETURN v_row;
END $$;

CREATE OR REPLACE FUNCTION memory.accept_transfer(conversation_id uuid) RETURNS memory.conversations
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._accept_transfer($1);
$$;

CREATE OR REPLACE FUNCTION memory._decline_transfer(conversation_id uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me uuid := memory._identity();
    v_n  integer;
BEGIN
    DELETE FROM memory.conversation_transfers t WHERE t.conversation_id = $1 AND v_me IN (t.from_user_id, t.to_user_id);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n > 0;
END $$;

CREATE OR REPLACE FUNCTION memory.decline_transfer(conversation_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._decline_transfer($1);
$$;

CREATE OR REPLACE FUNCTION memory._erase_user(user_id uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_counts jsonb := '{}';
    v_n      bigint;
    v_table  text;
BEGIN
    IF NOT memory._caller_bypasses_rls() THEN
        RAISE EXCEPTION 'memory.erase_user is for superusers and roles that bypass row-level security'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'user_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- what the user wrote elsewhere, then what the conversations' cascade takes, counted first
    DELETE FROM memory.conversation_messages m USING memory.conversations c
     WHERE m.author_id = $1 AND c.id = m.conversation_id AND c.user_id <> $1;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('authored_messages', v_n);
    SELECT count(*) INTO v_n FROM memory.conversation_messages m JOIN memory.conversations c ON c.id = m.conversation_id WHERE c.user_id = $1;
    v_counts := v_counts || jsonb_build_object('conversation_messages', v_n);
    SELECT count(*) INTO v_n FROM memory.conversation_summaries s JOIN memory.conversations c ON c.id = s.conversation_id WHERE c.user_id = $1;
    v_counts := v_counts || jsonb_build_object('conversation_summaries', v_n);
    SELECT count(*) INTO v_n FROM memory.share_links l JOIN memory.conversations c ON c.id = l.conversation_id WHERE c.user_id = $1;
    v_counts := v_counts || jsonb_build_object('share_links', v_n);
    SELECT count(*) INTO v_n FROM memory.conversation_members m WHERE m.owner_id = $1 OR m.user_id = $1;
    v_counts := v_counts || jsonb_build_object('conversation_members', v_n);
    SELECT count(*) INTO v_n FROM memory.jobs j
     WHERE j.user_id = $1 OR j.conversation_id IN (SELECT c.id FROM memory.conversations c WHERE c.user_id = $1);
    v_counts := v_counts || jsonb_build_object('jobs', v_n);

    SELECT count(*) INTO v_n FROM memory.conversation_transfers t WHERE t.from_user_id = $1 OR t.to_user_id = $1;
    v_counts := v_counts || jsonb_build_object('conversation_transfers', v_n);

    DELETE FROM memory.conversation_members m WHERE m.user_id = $1;
    DELETE FROM memory.conversation_transfers t WHERE t.to_user_id = $1;
    DELETE FROM memory.jobs j WHERE j.user_id = $1;
    DELETE FROM memory.conversations c WHERE c.user_id = $1;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('conversations', v_n);
    -- the tables keyed by the user alone
    FOREACH v_table IN ARRAY ARRAY['queue_turns', 'conversation_templates', 'llm_calls', 'user_usage', 'agents'] LOOP
        EXECUTE format('DELETE FROM memory.%I t WHERE t.user_id = $1', v_table) USING $1;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_counts := v_counts || jsonb_build_object(v_table, v_n);
    END LOOP;
    RETURN v_counts;
END $$;

CREATE OR REPLACE FUNCTION memory.reindex_search(batch integer DEFAULT 10000) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_config regconfig := memory._search_config()::regconfig;
    v_done   bigint := 0;
    v_n      bigint;
    v_last   uuid := '00000000-0000-0000-0000-000000000000';
BEGIN
    IF NOT memory._current_role_is_superuser() THEN
        RAISE EXCEPTION 'memory.reindex_search is for superusers' USING ERRCODE = 'insufficient_privilege';
    END IF;
    LOOP
        WITH b AS (SELECT m.id FROM memory.conversation_messages m WHERE m.id > v_last ORDER BY m.id LIMIT greatest($1, 1)),
             u AS (UPDATE memory.conversation_messages m
                      SET search_vector = memory._search_vector(v_config, m.conversation_id, c.user_id, m.content, m.tool_calls)
                     FROM b, memory.conversations c WHERE m.id = b.id AND c.id = m.conversation_id RETURNING m.id)
        SELECT count(*), (array_agg(u.id ORDER BY u.id DESC))[1] INTO v_n, v_last FROM u;
        EXIT WHEN v_n = 0;
        v_done := v_done + v_n;
    END LOOP;
    RETURN v_done;
END $$;

CREATE OR REPLACE FUNCTION memory._list_conversations(
    agent_id uuid, "limit" integer, metadata jsonb, title text, updated_before timestamptz, updated_after timestamptz,
    before_id uuid, archived boolean, shared boolean
) RETURNS SETOF memory.listed_conversation
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- the filters, written once for both sources below
    v_filter constant text := $f$
           AND ($1 IS NULL OR c.agent_id = $1)
           AND ($3 IS NULL OR c.metadata @> $3)
           AND ($4 IS NULL OR c.title ILIKE '%' || replace(replace(replace($4, '\', '\\'), '%', '\%'), '_', '\_') || '%')
           AND ($5 IS NULL OR c.updated_at < $5 OR (c.updated_at = $5 AND $7 IS NOT NULL AND c.id > $7))
           AND ($6 IS NULL OR c.updated_at > $6)
           AND ($8 IS NULL OR (c.archived_at IS NOT NULL) = $8)
         ORDER BY c.updated_at DESC, c.id
         LIMIT $2$f$;
BEGIN
    IF $2 IS NULL OR $2 < 1 OR $2 > 1000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 1000, got %', coalesce($2::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $4 IS NOT NULL AND length($4) > 200 THEN
        RAISE EXCEPTION 'title filter longer than 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $7 IS NOT NULL AND $5 IS NULL THEN
        RAISE EXCEPTION 'before_id needs updated_before (the last row''s updated_at)' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Two sources, each cut at the page size, merged: the caller's own conversations (in the order
    -- of the index on user_id, updated_at) and those shared with it.
    RETURN QUERY EXECUTE format($q$
        SELECT x.* FROM (
            (SELECT c.*, 'owner'::text AS access FROM memory.conversations c
              WHERE $9 IS NOT TRUE AND c.user_id = $10 %1$s)
            UNION ALL
            (SELECT c.*, m.role FROM unnest(memory._shared_with($10, false)) AS s(id)
               JOIN memory.conversations c ON c.id = s.id
               JOIN memory.conversation_members m ON m.conversation_id = s.id AND m.user_id = $10
              WHERE $9 IS NOT FALSE %1$s)
        ) x
        ORDER BY x.updated_at DESC, x.id
        LIMIT $2$q$, v_filter)
    USING $1, $2, $3, $4, $5, $6, $7, $8, $9, memory.current_user_id();
END $$;

CREATE OR REPLACE FUNCTION memory.list_conversations(
    agent_id uuid DEFAULT NULL,
    "limit" integer DEFAULT 20,
    metadata jsonb DEFAULT NULL,
    title text DEFAULT NULL,
    updated_before timestamptz DEFAULT NULL,
    updated_after timestamptz DEFAULT NULL,
    before_id uuid DEFAULT NULL,
    archived boolean DEFAULT false,
    shared boolean DEFAULT NULL
) RETURNS SETOF memory.listed_conversation
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._list_conversations($1, $2, $3, $4, $5, $6, $7, $8, $9);
$$;

CREATE OR REPLACE VIEW memory.usage_daily WITH (security_invoker = true) AS
SELECT u.day, u.user_id, u.agent_id, u.model,
       sum(u.messages)::bigint AS messages,
       sum(u.stored_tokens)::bigint AS stored_tokens,
       sum(u.tool_calls)::bigint AS tool_calls,
       sum(u.llm_calls)::bigint AS llm_calls,
       sum(u.prompt_tokens)::bigint AS prompt_tokens,
       sum(u.completion_tokens)::bigint AS completion_tokens
  FROM (SELECT (m.created_at AT TIME ZONE 'UTC')::date AS day, coalesce(m.author_id, c.user_id) AS user_id, c.agent_id, NULL::text AS model,
               count(*) AS messages, sum(m.token_count) AS stored_tokens,
               sum(CASE WHEN jsonb_typeof(m.tool_calls) = 'array' THEN jsonb_array_length(m.tool_calls) ELSE 0 END) AS tool_calls,
               0 AS llm_calls, 0 AS prompt_tokens, 0 AS completion_tokens
          FROM memory.conversation_messages m JOIN memory.conversations c ON c.id = m.conversation_id
         GROUP BY 1, 2, 3
        UNION ALL
        SELECT (l.created_at AT TIME ZONE 'UTC')::date, l.user_id, l.agent_id, l.model,
               0, 0, 0, count(*), coalesce(sum(l.prompt_tokens), 0), coalesce(sum(l.completion_tokens), 0)
          FROM memory.llm_calls l
         GROUP BY 1, 2, 3, 4) u
 GROUP BY u.day, u.user_id, u.agent_id, u.model;

-- Data --------------------------------------------------------------------------------------------

-- every stored message's conversation lexeme in the new, unforgeable form, and its owner's lexeme
UPDATE memory.conversation_messages m
   SET search_vector = ts_delete(m.search_vector, 'conv' || encode(uuid_send(m.conversation_id), 'hex'))
                       || array_to_tsvector(ARRAY[memory._conversation_lexeme(m.conversation_id), memory._owner_lexeme(c.user_id)])
  FROM memory.conversations c
 WHERE c.id = m.conversation_id AND m.search_vector IS NOT NULL;
