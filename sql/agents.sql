-- Agents, chat turns, LLM usage and per-user limits.
--
-- An agent is a row of memory.agents: system prompt, model, tools, context and reply budgets,
-- summarize threshold, auto_reply. conversations.agent_id stays a plain uuid; an agents row
-- applies to a conversation when its id is the conversation's agent_id AND it belongs to the
-- conversation's owner. (So nobody can give someone else's conversations a system prompt by
-- creating an agent with a known id, nor read another user's agent by naming it in a
-- conversation of their own.)

CREATE TABLE memory.agents (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL DEFAULT memory.current_user_id(),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    system_prompt       text,
    -- NULL: the operator's memory.llm_model
    model               text CHECK (length(model) BETWEEN 1 AND 200),
    -- OpenAI tool definitions, validated by the trigger below
    tools               jsonb NOT NULL DEFAULT '[]',
    max_context_tokens  integer NOT NULL DEFAULT 8000 CHECK (max_context_tokens BETWEEN 1 AND 10000000),
    reply_max_tokens    integer NOT NULL DEFAULT 2000 CHECK (reply_max_tokens >= 1),
    temperature         real NOT NULL DEFAULT 0.7 CHECK (temperature BETWEEN 0 AND 2),
    -- NULL: memory.summarize_threshold (never below memory.min_summarize_threshold)
    summarize_threshold integer CHECK (summarize_threshold >= 1),
    auto_reply          boolean NOT NULL DEFAULT false,
    metadata            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- NULL or 0: memory.retention_days; n: deleted n days (or sooner when the operator's period is shorter)
    -- after their last update
    retention_days      integer CHECK (retention_days >= 0),
    -- whether members of the agent's conversations (viewers, editors) may read its system_prompt
    -- and tools, and whether their turns and reply jobs are built with them: off, only the owner's
    -- are (members get windows without the private parts)
    share_config        boolean NOT NULL DEFAULT false,
    CONSTRAINT agents_reply_fits_check CHECK (reply_max_tokens < max_context_tokens)
);
CREATE INDEX agents_user_idx ON memory.agents (user_id, created_at);

-- One row per LLM call of any kind. Written by memory_ext only; owners read their own.
CREATE TABLE memory.llm_calls (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id     uuid REFERENCES memory.conversations (id) ON DELETE SET NULL,
    user_id             uuid NOT NULL,
    agent_id            uuid,
    job_id              bigint,
    kind                text NOT NULL CHECK (kind IN ('summary', 'chat', 'reply')),
    model               text NOT NULL,
    -- as the provider reported them (NULL when it did not)
    prompt_tokens       integer CHECK (prompt_tokens >= 0),
    completion_tokens   integer CHECK (completion_tokens >= 0),
    total_tokens        integer CHECK (total_tokens >= 0),
    -- the prompt as memory_ext counted it (window plus tools), before sending
    local_prompt_tokens integer CHECK (local_prompt_tokens >= 0),
    latency_ms          double precision CHECK (latency_ms >= 0),
    -- ok: the answer was used; discarded: answered, but the conversation changed meanwhile;
    -- error: no usable answer (error says why); pending: the worker's call in flight (its row is
    -- written before the call); unknown: the worker stopped while it was in flight, so the
    -- provider may have answered and billed it; rolled_back: memory.chat's call whose turn the
    -- caller's transaction rolled back (written afterwards by the worker: billed all the same)
    status              text NOT NULL CHECK (status IN ('ok', 'discarded', 'error', 'pending', 'unknown', 'rolled_back')),
    error               text,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX llm_calls_user_idx ON memory.llm_calls (user_id, created_at);
CREATE INDEX llm_calls_conversation_idx ON memory.llm_calls (conversation_id) WHERE conversation_id IS NOT NULL;

-- Per-user counters of the limits: one row per user, updated in place (O(1) per message; only
-- the same user's transactions wait for each other).
CREATE TABLE memory.user_usage (
    user_id         uuid PRIMARY KEY,
    minute_start    timestamptz NOT NULL,
    minute_messages integer NOT NULL,
    day_start       date NOT NULL,
    day_tokens      bigint NOT NULL
);

SELECT pg_catalog.pg_extension_config_dump('memory.agents', '');
SELECT pg_catalog.pg_extension_config_dump('memory.llm_calls', '');
SELECT pg_catalog.pg_extension_config_dump('memory.llm_calls_id_seq', '');

-- Validates an agent: tools are OpenAI function definitions with unique names; the owner and id
-- never change; sizes are bounded like messages.
CREATE OR REPLACE FUNCTION memory._agent_before_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tool jsonb;
    v_names text[] := '{}';
    v_name text;
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.id, NEW.user_id) IS DISTINCT FROM (OLD.id, OLD.user_id) THEN
        RAISE EXCEPTION 'the id and owner of an agent cannot change' USING ERRCODE = 'feature_not_supported';
    END IF;
    IF jsonb_typeof(NEW.tools) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'tools must be a JSON array of OpenAI tool definitions' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM memory._check_message_limits(
        coalesce(octet_length(NEW.system_prompt), 0) + pg_column_size(NEW.tools) + pg_column_size(NEW.metadata),
        jsonb_array_length(NEW.tools));
    FOR v_tool IN SELECT t FROM jsonb_array_elements(NEW.tools) AS t LOOP
        v_name := v_tool #>> '{function,name}';
        IF jsonb_typeof(v_tool) IS DISTINCT FROM 'object' OR v_tool->>'type' IS DISTINCT FROM 'function'
           OR jsonb_typeof(v_tool->'function') IS DISTINCT FROM 'object' THEN
            RAISE EXCEPTION 'each tool must be {"type": "function", "function": {"name": …}}, got %', left(v_tool::text, 80)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_name IS NULL OR v_name !~ '^[a-zA-Z0-9_-]{1,64}$' THEN
            RAISE EXCEPTION 'tool name must be 1-64 letters, digits, _ or -, got %', left(coalesce(v_name, 'NULL'), 80)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_name = ANY (v_names) THEN
            RAISE EXCEPTION 'tool name "%" appears twice', v_name USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (v_tool->'function') ? 'parameters' AND jsonb_typeof(v_tool #> '{function,parameters}') IS DISTINCT FROM 'object' THEN
            RAISE EXCEPTION 'parameters of tool "%" must be a JSON Schema object', v_name USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (v_tool->'function') ? 'description' AND jsonb_typeof(v_tool #> '{function,description}') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'description of tool "%" must be a string', v_name USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_names := v_names || v_name;
    END LOOP;
    NEW.created_at := CASE WHEN TG_OP = 'INSERT' THEN now() ELSE OLD.created_at END;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER agents_before_write BEFORE INSERT OR UPDATE ON memory.agents
    FOR EACH ROW EXECUTE FUNCTION memory._agent_before_write();

-- Keeps the day's token counter of the user a call belongs to: a call is charged when its row is
-- written (the prompt as counted locally, while the provider has not reported), and charged the
-- difference when the worker completes the row with the provider's figures.
CREATE OR REPLACE FUNCTION memory._llm_call_after_write() RETURNS trigger
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

-- Limits ---------------------------------------------------------------------------------------
-- The one home of the per-minute counter (fixed one-minute windows): adds p_count messages to
-- p_user's count of the minute that starts at p_minute and returns that minute's count. A newer
-- minute starts the count afresh; an older minute than the one stored changes nothing (returns 0).
-- The worker calls it too, for the chat turns whose transactions rolled back.
CREATE OR REPLACE FUNCTION memory._add_minute_messages(p_user uuid, p_count integer, p_minute timestamptz) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO memory.user_usage AS u (user_id, minute_start, minute_messages, day_start, day_tokens)
    VALUES (p_user, p_minute, p_count, (now() AT TIME ZONE 'UTC')::date, 0)
    ON CONFLICT (user_id) DO UPDATE
       SET minute_messages = CASE WHEN u.minute_start = excluded.minute_start THEN u.minute_messages + excluded.minute_messages
                                  WHEN u.minute_start < excluded.minute_start THEN excluded.minute_messages
                                  ELSE u.minute_messages END,
           minute_start = greatest(u.minute_start, excluded.minute_start)
    RETURNING CASE WHEN u.minute_start = p_minute THEN u.minute_messages ELSE 0 END;
$$;

-- Counts p_count messages against p_user's memory.max_messages_per_minute (p_max), with the
-- user's chat turns of this minute that rolled back and the worker has not recorded yet (each
-- counts one: rolling back is no way past the limit). Over the limit: PT429, and the caller's
-- statement fails.
CREATE OR REPLACE FUNCTION memory._take_minute_quota(p_user uuid, p_count integer, p_max integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_minute timestamptz := date_trunc('minute', clock_timestamp());
    v_count integer := memory._add_minute_messages(p_user, p_count, v_minute)
                       + memory._pending_rolled_back_turns(p_user);
BEGIN
    IF v_count > p_max THEN
        RAISE EXCEPTION '%', CASE WHEN p_count = 1 THEN format('rate limit: more than %s messages in one minute; retry after %s',
                                                                p_max, v_minute + interval '1 minute')
                                  ELSE format('rate limit: %s messages would make more than %s in one minute; retry after %s',
                                              p_count, p_max, v_minute + interval '1 minute') END
            USING ERRCODE = 'PT429',
                  HINT = format('Retry in %s seconds. The operator sets memory.max_messages_per_minute.',
                                ceil(extract(epoch FROM v_minute + interval '1 minute' - clock_timestamp())));
    END IF;
END $$;

-- Counts one message against the caller's memory.max_messages_per_minute; the insert triggers
-- call it when memory._message_limit_applies(). Keyed by the caller's own identity: calling it
-- directly only spends one's own quota.
CREATE OR REPLACE FUNCTION memory._take_message_quota() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user uuid := memory.current_user_id();
    v_max integer := memory._max_messages_per_minute();
BEGIN
    IF v_user IS NOT NULL AND v_max > 0 THEN
        PERFORM memory._take_minute_quota(v_user, 1, v_max);
    END IF;
END $$;

-- Counts p_count messages at once against the caller's memory.max_messages_per_minute, for the
-- bulk routes (import, templates, fork) that write with the per-row triggers off; PT429 when they
-- do not all fit in the minute. As in the triggers, roles that bypass RLS and memory.chat's stored
-- answer are not limited. Keyed by the caller's own identity; called only from memory_ext's
-- definer functions.
CREATE OR REPLACE FUNCTION memory._take_message_quotas(p_count integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user uuid := memory.current_user_id();
    v_max integer := memory._max_messages_per_minute();
BEGIN
    IF v_user IS NULL OR v_max <= 0 OR p_count <= 0 OR memory._caller_bypasses_rls() OR memory._in_chat_turn() THEN
        RETURN;
    END IF;
    PERFORM memory._take_minute_quota(v_user, p_count, v_max);
END $$;

-- NULL while p_user is under memory.max_llm_tokens_per_day LLM tokens today (UTC); else the
-- PT429 error to raise, as {sqlstate, message, hint}.
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

-- Raises an error given as {sqlstate, message, hint}; nothing when it is NULL.
CREATE OR REPLACE FUNCTION memory._raise_error(p_error jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_error IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = p_error->>'sqlstate', MESSAGE = p_error->>'message', HINT = p_error->>'hint';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION memory._check_token_quota_of(p_user uuid) RETURNS void
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._raise_error(memory._token_quota_error(p_user));
$$;

-- The caller's own token quota, for memory.chat before it calls the LLM.
CREATE OR REPLACE FUNCTION memory._caller_token_quota_error() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._token_quota_error(memory.current_user_id());
$$;

-- memory.chat's record of its LLM call. Works only while memory.chat writes its answer (the
-- library says so), so nobody can write usage rows of their own making; charged to the caller (or, for a caller
-- without identity such as a service role, to the conversation's owner).
CREATE OR REPLACE FUNCTION memory._record_chat_call(
    p_conversation_id uuid, p_agent_id uuid, p_model text, p_prompt_tokens integer, p_completion_tokens integer,
    p_total_tokens integer, p_local_prompt_tokens integer, p_latency_ms double precision
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id bigint;
BEGIN
    IF NOT memory._in_chat_turn() THEN
        RAISE EXCEPTION 'memory._record_chat_call is memory.chat''s own' USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO memory.llm_calls (conversation_id, user_id, agent_id, kind, model, prompt_tokens, completion_tokens,
                                  total_tokens, local_prompt_tokens, latency_ms, status)
    SELECT c.id, coalesce(memory.current_user_id(), c.user_id), p_agent_id, 'chat', p_model, p_prompt_tokens,
           p_completion_tokens, p_total_tokens, p_local_prompt_tokens, p_latency_ms, 'ok'
      FROM memory.conversations c WHERE c.id = p_conversation_id
    RETURNING id INTO v_id;
    RETURN v_id;
END $$;

-- Agents ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION memory.create_agent(
    name text,
    system_prompt text DEFAULT NULL,
    model text DEFAULT NULL,
    tools jsonb DEFAULT '[]',
    max_context_tokens integer DEFAULT 8000,
    reply_max_tokens integer DEFAULT 2000,
    temperature real DEFAULT 0.7,
    summarize_threshold integer DEFAULT NULL,
    auto_reply boolean DEFAULT false,
    metadata jsonb DEFAULT '{}',
    retention_days integer DEFAULT NULL
) RETURNS memory.agents
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.agents;
    v_user uuid := memory.current_user_id();
BEGIN
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'no user identity: memory.current_user_id() is NULL'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Through PostgREST/Supabase send a JWT with a sub claim; from psql or an application server SET memory.user_id = ''<uuid>''.';
    END IF;
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO memory.agents AS a (user_id, name, system_prompt, model, tools, max_context_tokens, reply_max_tokens,
                                    temperature, summarize_threshold, auto_reply, metadata, retention_days)
    VALUES (v_user, $1, $2, $3, coalesce($4, '[]'), coalesce($5, 8000), coalesce($6, 2000), coalesce($7, 0.7), $8,
            coalesce($9, false), coalesce($10, '{}'), $11)
    RETURNING a.* INTO v_row;
    RETURN v_row;
END $$;

-- Changes the given settings; a NULL argument leaves its setting as it is (set a column to NULL
-- with a plain UPDATE).
CREATE OR REPLACE FUNCTION memory.update_agent(
    agent_id uuid,
    name text DEFAULT NULL,
    system_prompt text DEFAULT NULL,
    model text DEFAULT NULL,
    tools jsonb DEFAULT NULL,
    max_context_tokens integer DEFAULT NULL,
    reply_max_tokens integer DEFAULT NULL,
    temperature real DEFAULT NULL,
    summarize_threshold integer DEFAULT NULL,
    auto_reply boolean DEFAULT NULL,
    metadata jsonb DEFAULT NULL,
    retention_days integer DEFAULT NULL
) RETURNS memory.agents
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.agents;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'agent_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE memory.agents a
       SET name = coalesce($2, a.name), system_prompt = coalesce($3, a.system_prompt), model = coalesce($4, a.model),
           tools = coalesce($5, a.tools), max_context_tokens = coalesce($6, a.max_context_tokens),
           reply_max_tokens = coalesce($7, a.reply_max_tokens), temperature = coalesce($8, a.temperature),
           summarize_threshold = coalesce($9, a.summarize_threshold), auto_reply = coalesce($10, a.auto_reply),
           metadata = coalesce($11, a.metadata), retention_days = coalesce($12, a.retention_days)
     WHERE a.id = $1 AND a.user_id = memory.current_user_id()
    RETURNING a.* INTO v_row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_row;
END $$;

-- Deletes one's own agent. Its conversations stay (agent_id is a plain uuid) and from then on
-- use the defaults: no system prompt, memory.llm_model, an 8000-token window.
CREATE OR REPLACE FUNCTION memory.delete_agent(agent_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (DELETE FROM memory.agents a WHERE a.id = $1 AND a.user_id = memory.current_user_id() RETURNING 1)
    SELECT count(*) > 0 FROM gone;
$$;

CREATE OR REPLACE FUNCTION memory.get_agent(agent_id uuid) RETURNS memory.agents
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.agents;
BEGIN
    SELECT a.* INTO v_row FROM memory.agents a WHERE a.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_row;
END $$;

-- Reply jobs -----------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION memory._request_reply(p_conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_owner uuid;
BEGIN
    PERFORM memory._require(p_conversation_id, 'write');
    SELECT c.user_id INTO v_owner FROM memory.conversations c WHERE c.id = p_conversation_id;
    PERFORM memory._check_token_quota_of(coalesce(memory.current_user_id(), v_owner));
    RETURN memory._enqueue_job('reply', p_conversation_id);
END $$;

CREATE OR REPLACE FUNCTION memory.request_reply(conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN memory._request_reply($1);
END $$;

-- A reply job of a conversation the caller may read, or NULL.
CREATE OR REPLACE FUNCTION memory._reply_status(p_job_id bigint) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('id', j.id, 'conversation_id', j.conversation_id, 'status', j.status,
                              'attempts', j.attempts, 'last_error', j.last_error, 'run_after', j.run_after,
                              'message_id', j.payload->'message_id', 'created_at', j.created_at, 'updated_at', j.updated_at)
      FROM memory.jobs j
     WHERE j.id = p_job_id AND j.kind = 'reply' AND memory.can_read(j.conversation_id);
$$;

CREATE OR REPLACE FUNCTION memory.reply_status(job_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_status jsonb := memory._reply_status($1);
BEGIN
    IF v_status IS NULL THEN
        RAISE EXCEPTION 'reply job % does not exist', coalesce($1::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_status;
END $$;

-- Row-level security and privileges ------------------------------------------------------------
ALTER TABLE memory.agents ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.llm_calls ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.user_usage ENABLE ROW LEVEL SECURITY;

CREATE POLICY agents_owner ON memory.agents
    USING (user_id = (SELECT memory.current_user_id()))
    WITH CHECK (user_id = (SELECT memory.current_user_id()));
-- whoever may read a conversation may read the agent that applies to it, when its owner shares
-- its configuration (share_config): otherwise the prompt and tools stay the owner's alone, on every
-- route that reads agents under the caller's RLS (the table, get_agent, build_context, chat turns)
CREATE POLICY agents_of_readable_conversations ON memory.agents FOR SELECT
    USING (share_config AND EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.agent_id = agents.id AND c.user_id = agents.user_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                               (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));

CREATE POLICY llm_calls_owner ON memory.llm_calls FOR SELECT
    USING (user_id = (SELECT memory.current_user_id()));

GRANT SELECT, INSERT, UPDATE, DELETE ON memory.agents TO PUBLIC;
GRANT SELECT ON memory.llm_calls TO PUBLIC;
REVOKE ALL ON memory.user_usage FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION
    memory._agent_before_write(), memory._llm_call_after_write(), memory._check_token_quota_of(uuid),
    memory._take_message_quotas(integer), memory._add_minute_messages(uuid, integer, timestamptz),
    memory._take_minute_quota(uuid, integer, integer), memory._pending_rolled_back_turns(uuid),
    memory._token_quota_error(uuid), memory._pending_llm_tokens(uuid),
    -- settings and flags that only memory_ext's definer code reads
    memory._max_messages_per_minute(), memory._max_llm_tokens_per_day(), memory._in_chat_turn(),
    memory._notify_messages(), memory._auto_reply_suppressed()
FROM PUBLIC;

-- Chat turns -----------------------------------------------------------------------------------
-- The synchronous turn: appends the user's message, then memory._chat_answer (the library) builds
-- the agent's window, calls the LLM, stores the answer and records the call. In the caller's
-- transaction: on any failure nothing is written.
CREATE OR REPLACE FUNCTION memory._start_turn(p_conversation_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_conversation_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF pg_is_in_recovery() OR current_setting('transaction_read_only')::boolean THEN
        RAISE EXCEPTION 'memory.chat writes the turn''s messages: it cannot run in a read-only transaction or on a standby'
            USING ERRCODE = 'read_only_sql_transaction';
    END IF;
    PERFORM memory._raise_error(memory._caller_token_quota_error());
END $$;

CREATE OR REPLACE FUNCTION memory._finish_turn(p_answer jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._raise_error(p_answer->'error');
    RETURN p_answer;
END $$;

CREATE OR REPLACE FUNCTION memory.chat(conversation_id uuid, content text, metadata jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._start_turn($1);
    IF $2 IS NULL THEN
        RAISE EXCEPTION 'content must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM memory._suppress_auto_reply();
    PERFORM memory.add_message($1, 'user', $2, metadata => $3);
    RETURN memory._finish_turn(memory._chat_answer($1));
END $$;

-- The same turn without a new user message: after the application appended the results of the
-- previous answer's tool calls. Whether the caller may write the answer is checked before the LLM
-- is called (memory.chat's user message checks it the same way).
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

-- The Rust half of a turn reads the window like build_context, so its plans are pinned to the
-- index the same way (see context.sql), and its search_path like every other function's.
ALTER FUNCTION memory._chat_answer(uuid)
    SET enable_sort = off
    SET enable_bitmapscan = off
    SET enable_seqscan = off;
ALTER FUNCTION memory._chat_answer(uuid) SET search_path = pg_catalog, pg_temp;

-- The implementations behind the entry points above, which run as the owner and call them:
-- never executable by PUBLIC (internal helpers are no RPC endpoints).
REVOKE EXECUTE ON FUNCTION
    memory._request_reply(uuid),
    memory._reply_status(bigint)
FROM PUBLIC;
