-- memory_ext 0.1.0 -> 0.2.0
--
-- Security: identity is asserted only by trusted logins (settings in the library), every
-- function pins search_path, SECURITY DEFINER helpers check the one authorization rule
-- themselves instead of taking a forgeable proof, summary ids cannot be chosen, summaries are
-- validated and immutable, counters are guarded by role rather than trigger depth, message size
-- and tool calls per message are bounded, the summarize threshold has an operator's floor, and
-- the worker takes jobs fairly between users. The summary queue becomes the generic job queue
-- memory.jobs (kinds 'summary' and 'reply'). New: agents and chat turns, export and import, fork and rewind.

-- New functions of the library -----------------------------------------------------------------
CREATE FUNCTION memory."_caller_bypasses_rls"() RETURNS bool
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_caller_bypasses_rls_wrapper';

CREATE FUNCTION memory."_check_message_limits"(
	"bytes" bigint,
	"tool_calls" INT
) RETURNS void
STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_check_message_limits_wrapper';

CREATE FUNCTION memory."_current_role_is_superuser"() RETURNS bool
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_current_role_is_superuser_wrapper';

CREATE FUNCTION memory."_summarize_threshold"(
	"agent_threshold" INT DEFAULT NULL
) RETURNS bigint
STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_summarize_threshold_wrapper';

CREATE FUNCTION memory."_in_chat_turn"() RETURNS bool
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_in_chat_turn_wrapper';

CREATE FUNCTION memory."_max_llm_tokens_per_day"() RETURNS bigint
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_max_llm_tokens_per_day_wrapper';

CREATE FUNCTION memory."_max_messages_per_minute"() RETURNS INT
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_max_messages_per_minute_wrapper';

CREATE FUNCTION memory."_message_limit_applies"() RETURNS bool
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_message_limit_applies_wrapper';

CREATE FUNCTION memory."_notify_messages"() RETURNS bool
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_notify_messages_wrapper';

CREATE FUNCTION memory."_suppress_auto_reply"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_suppress_auto_reply_wrapper';

CREATE FUNCTION memory."_auto_reply_suppressed"() RETURNS bool
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_auto_reply_suppressed_wrapper';

CREATE FUNCTION memory."_chat_answer"(
	"conversation_id" uuid
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_chat_answer_wrapper';

-- Tables ---------------------------------------------------------------------------------------
-- Index maintenance (and REINDEX as the superuser) runs this one: pin its search_path.
ALTER FUNCTION memory._tool_keys(uuid, jsonb, text) SET search_path = pg_catalog, pg_temp;

CREATE TABLE memory.queue_turns (
    user_id         uuid PRIMARY KEY,
    -- NULL: never served yet (served first)
    last_claimed_at timestamptz,
    queued          integer NOT NULL DEFAULT 0
);
CREATE INDEX queue_turns_waiting_idx ON memory.queue_turns (last_claimed_at NULLS FIRST) WHERE queued > 0;

-- One queue for every kind of background job. The summary jobs move in with their ids.
CREATE TABLE memory.jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('summary', 'reply')),
    conversation_id uuid REFERENCES memory.conversations (id) ON DELETE CASCADE,
    user_id         uuid,
    payload         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    run_after       timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX jobs_one_pending_idx ON memory.jobs (kind, conversation_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX jobs_user_due_idx ON memory.jobs (user_id, run_after, id) WHERE status = 'queued';
CREATE INDEX jobs_conversation_idx ON memory.jobs (conversation_id, id);

INSERT INTO memory.jobs (id, kind, conversation_id, user_id, status, attempts, last_error, run_after, created_at, updated_at)
OVERRIDING SYSTEM VALUE
SELECT j.id, 'summary', j.conversation_id, c.user_id, j.status, j.attempts, j.last_error, j.run_after, j.created_at, j.updated_at
  FROM memory.summary_jobs j JOIN memory.conversations c ON c.id = j.conversation_id;
SELECT pg_catalog.setval('memory.jobs_id_seq', coalesce(max(id), 1), max(id) IS NOT NULL) FROM memory.summary_jobs;
-- each user's queued jobs (from here on the trigger on jobs keeps this count)
INSERT INTO memory.queue_turns (user_id, queued)
SELECT user_id, count(*) FROM memory.jobs WHERE status = 'queued' AND user_id IS NOT NULL GROUP BY user_id;
-- (leave the dump list first: dropping a table would leave its oid there)
ALTER EXTENSION memory_ext DROP SEQUENCE memory.summary_jobs_id_seq;
ALTER EXTENSION memory_ext DROP TABLE memory.summary_jobs;
DROP TABLE memory.summary_jobs;
SELECT pg_catalog.pg_extension_config_dump('memory.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('memory.jobs_id_seq', '');

-- Idempotent appends: a client's key per message, unique per conversation.
ALTER TABLE memory.conversation_messages
    ADD COLUMN idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 200);
CREATE UNIQUE INDEX conversation_messages_idempotency_key_idx ON memory.conversation_messages (conversation_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The one authorization rule -------------------------------------------------------------------
-- The one authorization rule. Every policy, public function and SECURITY DEFINER helper asks
-- these two questions and nothing else, so that who may read or write a conversation is decided
-- in exactly one place.
--
-- _can_read_row/_can_write_row judge a conversation row (its id and owner) for a caller. They are
-- plain SQL that PostgreSQL inlines into the policies, so the owner test stays an index condition;
-- for that they cannot pin search_path, and instead qualify every operator. The policies pass the
-- caller as (SELECT memory.current_user_id()), computed once per query, not once per row.
CREATE FUNCTION memory._can_read_row(conversation_id uuid, owner uuid, caller uuid) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $2 OPERATOR(pg_catalog.=) $3
$$;

CREATE FUNCTION memory._can_write_row(conversation_id uuid, owner uuid, caller uuid) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $2 OPERATOR(pg_catalog.=) $3
$$;

-- The same rule by conversation id, for SECURITY DEFINER helpers (which run outside RLS) and for
-- callers who want to ask. A role that bypasses RLS (superuser, Supabase's service_role) may, as
-- RLS lets it. Reveals nothing: false for a conversation that does not exist and for one the
-- caller may not see alike.
CREATE FUNCTION memory.can_read(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = $1 AND (memory._caller_bypasses_rls() OR memory._can_read_row(c.id, c.user_id, memory.current_user_id())));
$$;

CREATE FUNCTION memory.can_write(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = $1 AND (memory._caller_bypasses_rls() OR memory._can_write_row(c.id, c.user_id, memory.current_user_id())));
$$;

-- Summaries and their queue --------------------------------------------------------------------
-- "The newest summary" of a conversation, one definition for build_context, the worker and
-- summary_status: the highest covers_through_seq, then the highest id.
CREATE FUNCTION memory._newest_summary(p_conversation_id uuid) RETURNS memory.conversation_summaries
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.* FROM memory.conversation_summaries s
     WHERE s.conversation_id = p_conversation_id
     ORDER BY s.covers_through_seq DESC, s.id DESC
     LIMIT 1;
$$;

-- Validates an inserted summary and sets what memory_ext maintains: it must cover messages that
-- exist, fit the size limit, and its counts are computed here (users cannot choose them).
CREATE OR REPLACE FUNCTION memory._summary_before_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_encoding text;
    v_last_seq bigint;
BEGIN
    PERFORM memory._check_message_limits(octet_length(NEW.content), 0);
    SELECT c.encoding, c.last_seq INTO v_encoding, v_last_seq FROM memory.conversations c WHERE c.id = NEW.conversation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', NEW.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    IF NEW.covers_through_seq IS NULL OR NEW.covers_through_seq < 1 OR NEW.covers_through_seq > v_last_seq THEN
        RAISE EXCEPTION 'covers_through_seq must name a message of the conversation (1..%), got %',
            v_last_seq, coalesce(NEW.covers_through_seq::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- what build_context will emit for it, counted once here
    NEW.token_count := memory.message_tokens('system', 'Summary of the earlier conversation: ' || NEW.content, NULL, NULL, v_encoding);
    NEW.covered_tokens := coalesce((SELECT sum(m.token_count) FROM memory.conversation_messages m
                                     WHERE m.conversation_id = NEW.conversation_id AND m.seq <= NEW.covers_through_seq), 0);
    NEW.created_at := now();
    RETURN NEW;
END $$;

-- Tokens of a conversation not covered by its newest summary: two index probes.
CREATE OR REPLACE FUNCTION memory._uncovered_tokens(p_conversation_id uuid, p_total_tokens bigint) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_total_tokens - coalesce((memory._newest_summary(p_conversation_id)).covered_tokens, 0);
$$;

-- Keeps queue_turns.queued, the number of each user's queued jobs. SECURITY DEFINER: jobs also
-- go with a conversation a user deletes (the cascade), and users may not write queue_turns.
CREATE FUNCTION memory._jobs_count_queued() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'queued' AND OLD.user_id IS NOT NULL THEN
        UPDATE memory.queue_turns t SET queued = t.queued - 1 WHERE t.user_id = OLD.user_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'queued' AND NEW.user_id IS NOT NULL THEN
        INSERT INTO memory.queue_turns AS t (user_id, queued) VALUES (NEW.user_id, 1)
        ON CONFLICT (user_id) DO UPDATE SET queued = t.queued + 1;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_count_queued AFTER INSERT OR DELETE OR UPDATE OF status, user_id ON memory.jobs
    FOR EACH ROW EXECUTE FUNCTION memory._jobs_count_queued();

-- Queues a job of a kind for a conversation (idempotent: the pending job's id when there is one)
-- and notifies channel memory_<kind>_jobs with the job id. Not callable by users: request_summary
-- and the insert trigger check access first.
CREATE FUNCTION memory._enqueue_job(p_kind text, p_conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_job bigint;
BEGIN
    SELECT j.id INTO v_job FROM memory.jobs j
     WHERE j.kind = p_kind AND j.conversation_id = p_conversation_id AND j.status IN ('queued', 'running');
    IF FOUND THEN
        RETURN v_job;
    END IF;
    INSERT INTO memory.jobs (kind, conversation_id, user_id)
    SELECT p_kind, c.id, c.user_id FROM memory.conversations c WHERE c.id = p_conversation_id
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

-- request_summary's way into the queue: checks that the caller may write the conversation.
CREATE FUNCTION memory._request_summary(p_conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT memory.can_write(p_conversation_id) THEN
        RAISE EXCEPTION 'conversation % does not exist', p_conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN memory._enqueue_job('summary', p_conversation_id);
END $$;

-- The newest summary job of a conversation the caller may read, or NULL.
CREATE FUNCTION memory._summary_job_status(p_conversation_id uuid) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('id', j.id, 'status', j.status, 'attempts', j.attempts,
                              'last_error', j.last_error, 'run_after', j.run_after,
                              'created_at', j.created_at, 'updated_at', j.updated_at)
      FROM memory.jobs j
     WHERE j.kind = 'summary' AND j.conversation_id = p_conversation_id AND memory.can_read(p_conversation_id)
     ORDER BY j.id DESC LIMIT 1;
$$;

CREATE OR REPLACE FUNCTION memory.should_summarize(conversation_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_total bigint;
BEGIN
    SELECT c.total_tokens INTO v_total FROM memory.conversations c WHERE c.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    RETURN memory._uncovered_tokens($1, v_total) > memory._summarize_threshold();
END $$;

CREATE OR REPLACE FUNCTION memory.request_summary(conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN memory._request_summary($1);
END $$;

CREATE OR REPLACE FUNCTION memory.summary_status(conversation_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_conv memory.conversations;
    v_summary memory.conversation_summaries;
    v_uncovered bigint;
    v_threshold bigint := memory._summarize_threshold();
BEGIN
    SELECT c.* INTO v_conv FROM memory.conversations c WHERE c.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    v_summary := memory._newest_summary($1);
    v_uncovered := v_conv.total_tokens - coalesce(v_summary.covered_tokens, 0);
    RETURN jsonb_build_object(
        'conversation_id', v_conv.id,
        'total_tokens', v_conv.total_tokens,
        'uncovered_tokens', v_uncovered,
        'threshold', v_threshold,
        'should_summarize', v_uncovered > v_threshold,
        'summary', CASE WHEN v_summary.id IS NOT NULL THEN
                       jsonb_build_object('id', v_summary.id, 'covers_through_seq', v_summary.covers_through_seq,
                                          'content', v_summary.content, 'token_count', v_summary.token_count,
                                          'model', v_summary.model, 'created_at', v_summary.created_at) END,
        'job', memory._summary_job_status(v_conv.id));
END $$;

-- Triggers -------------------------------------------------------------------------------------
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

-- The first of p_keys (see memory._tool_keys) that an earlier message of the conversation holds,
-- or NULL. One GIN scan probes every key once (linear in the keys); only the matching rows'
-- own keys are compared. Called by the insert trigger only, outside RLS, so that the GIN index
-- can serve the lookup (under RLS the planner may not use the non-leakproof && operator as an
-- index condition); p_keys all name the one conversation the trigger has checked.
CREATE FUNCTION memory._tool_key_taken(p_keys text[]) RETURNS text
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

CREATE OR REPLACE FUNCTION memory._message_before_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_encoding text;
    v_prev     memory.conversation_messages;
BEGIN
    IF NEW.conversation_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- The rule, as the caller: a role that bypasses RLS (a backend's service role) may write
    -- anywhere, everyone else where the authorization rule says. Someone else's conversation is
    -- reported exactly like one that does not exist, before anything is locked or counted.
    SELECT c.encoding INTO v_encoding FROM memory.conversations c
     WHERE c.id = NEW.conversation_id
       AND (NOT row_security_active('memory.conversations') OR memory._can_write_row(c.id, c.user_id, memory.current_user_id()));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', NEW.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    -- the caller's messages-per-minute limit (PT429), when one is set
    IF memory._message_limit_applies() THEN
        PERFORM memory._take_message_quota();
    END IF;
    -- cheap size checks before any parsing or counting
    PERFORM memory._check_message_limits(
        octet_length(NEW.content) + coalesce(pg_column_size(NEW.tool_calls), 0) + coalesce(octet_length(NEW.tool_call_id), 0),
        CASE WHEN jsonb_typeof(NEW.tool_calls) = 'array' THEN jsonb_array_length(NEW.tool_calls) END);
    -- validates role, name, tool_calls and tool_call_id, and counts what build_context will emit
    NEW.token_count := memory.message_tokens(NEW.role, NEW.content, NEW.tool_calls, NEW.name, v_encoding, NEW.tool_call_id);
    -- Lock the conversation (appends to it serialise here) and make sure its encoding did not
    -- change while the message was counted.
    IF (SELECT c.encoding FROM memory.conversations c WHERE c.id = NEW.conversation_id FOR NO KEY UPDATE) IS DISTINCT FROM v_encoding THEN
        RAISE EXCEPTION 'the encoding of conversation % changed while adding a message; retry', NEW.conversation_id
            USING ERRCODE = 'serialization_failure';
    END IF;
    -- A retried append (same idempotency key, same message) is already stored: skip it. Under the
    -- lock, so concurrent retries see each other.
    IF NEW.idempotency_key IS NOT NULL THEN
        SELECT m.* INTO v_prev FROM memory.conversation_messages m
         WHERE m.conversation_id = NEW.conversation_id AND m.idempotency_key = NEW.idempotency_key;
        IF FOUND THEN
            IF (v_prev.role, v_prev.content, v_prev.name, v_prev.tool_calls, v_prev.tool_call_id)
               IS NOT DISTINCT FROM (NEW.role, NEW.content, NEW.name, NEW.tool_calls, NEW.tool_call_id) THEN
                RETURN NULL;
            END IF;
            RAISE EXCEPTION 'idempotency_key "%" was already used for a different message (seq %) of this conversation',
                left(NEW.idempotency_key, 80), v_prev.seq
                USING ERRCODE = 'unique_violation', HINT = 'Use a new key for each new message; reuse a key only to retry the same append.';
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- The second half of an insert (see the top of this file), as the owner: counters, seq, the
-- tool-call checks through the GIN index, the auto-summary check, the agent's auto-reply, and
-- the NOTIFY on channel memory_messages.
CREATE FUNCTION memory._message_before_insert_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_clash    text;
    v_total    bigint;
    v_seq      bigint;
    v_agent    uuid;
    v_owner    uuid;
    v_threshold bigint;
    v_agent_threshold integer;
    v_auto_reply boolean;
    v_prefix   text := NEW.conversation_id::text;
BEGIN
    UPDATE memory.conversations c
       SET message_count = c.message_count + 1,
           total_tokens = c.total_tokens + NEW.token_count,
           last_seq = c.last_seq + 1,
           updated_at = now()
     WHERE c.id = NEW.conversation_id
    RETURNING c.total_tokens, c.last_seq, c.agent_id, c.user_id INTO v_total, v_seq, v_agent, v_owner;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', NEW.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    -- the conversation's agent, when one of its owner's agents has that id (see agents.sql)
    SELECT a.summarize_threshold, a.auto_reply INTO v_agent_threshold, v_auto_reply
      FROM memory.agents a WHERE a.id = v_agent AND a.user_id = v_owner;
    v_threshold := memory._summarize_threshold(v_agent_threshold);

    IF NEW.tool_calls IS NOT NULL THEN
        v_clash := memory._tool_key_taken(
            ARRAY(SELECT v_prefix || kind || (call->>'id')
                    FROM jsonb_array_elements(NEW.tool_calls) AS call, unnest(ARRAY['/c/', '/g/']) AS kind));
        IF v_clash IS NOT NULL THEN
            RAISE EXCEPTION 'duplicate tool call id "%": an earlier message of this conversation already made that call', left(substr(v_clash, 40), 80)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF NEW.role = 'tool' THEN
        IF memory._tool_key_taken(ARRAY[v_prefix || '/c/' || NEW.tool_call_id]) IS NULL THEN
            RAISE EXCEPTION 'tool_call_id "%" matches no earlier assistant tool call in this conversation', left(NEW.tool_call_id, 80)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF memory._tool_key_taken(ARRAY[v_prefix || '/r/' || NEW.tool_call_id]) IS NOT NULL THEN
            RAISE EXCEPTION 'tool call "%" already has a result', left(NEW.tool_call_id, 80)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    NEW.seq := v_seq;

    -- Auto-summary: O(1) — the running total, then the newest summary's coverage.
    IF v_total > v_threshold AND memory._uncovered_tokens(NEW.conversation_id, v_total) > v_threshold THEN
        PERFORM memory._enqueue_job('summary', NEW.conversation_id);
    END IF;
    -- A user message to an auto-reply agent queues its answer (not inside memory.chat, which
    -- answers it itself); over the owner's daily token limit the message is refused (PT429).
    IF v_auto_reply AND NEW.role = 'user' AND NOT memory._auto_reply_suppressed() THEN
        PERFORM memory._check_token_quota_of(v_owner);
        PERFORM memory._enqueue_job('reply', NEW.conversation_id);
    END IF;
    -- ids only: anyone may LISTEN, and only RLS decides who reads the row
    IF memory._notify_messages() THEN
        PERFORM pg_notify('memory_messages',
            json_build_object('conversation_id', NEW.conversation_id, 'id', NEW.id, 'seq', v_seq)::text);
    END IF;
    NEW.created_at := coalesce(NEW.created_at, now());
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
    RETURN NEW;
END $$;


CREATE TRIGGER messages_before_insert_write BEFORE INSERT ON memory.conversation_messages
    FOR EACH ROW EXECUTE FUNCTION memory._message_before_insert_write();

-- One statement-level pass per DELETE (including the cascade of a deleted conversation).
-- SECURITY DEFINER: it keeps the counters (see the top of this file). It touches only the
-- conversations the deleted rows belonged to, rows RLS let the caller delete.
CREATE OR REPLACE FUNCTION memory._messages_after_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE memory.conversations c
       SET message_count = c.message_count - d.n,
           total_tokens = c.total_tokens - d.t
      FROM (SELECT g.conversation_id, count(*) AS n, sum(g.token_count) AS t
              FROM gone g GROUP BY g.conversation_id) d
     WHERE c.id = d.conversation_id;
    -- A deleted call takes its results with it: a result without its call is not a valid message.
    -- (Results carry no calls, so the nested DELETE's own pass stops here.)
    IF EXISTS (SELECT 1 FROM gone g WHERE g.tool_calls IS NOT NULL) THEN
        DELETE FROM memory.conversation_messages m
         USING gone g, jsonb_array_elements(g.tool_calls) AS call
         WHERE g.tool_calls IS NOT NULL
           AND m.conversation_id = g.conversation_id
           AND m.tool_call_id = call->>'id';
    END IF;
    RETURN NULL;
END $$;

-- The helpers that took a conversation's created_at as proof of access are gone.
DROP FUNCTION memory._tool_key_taken(uuid, timestamptz, text[]);
DROP FUNCTION memory._enqueue_summary(uuid, timestamptz);
DROP FUNCTION memory._job_status(uuid, timestamptz);
DROP FUNCTION memory._check_visibility_proof(uuid, timestamptz);

-- Row-level security and privileges ------------------------------------------------------------
ALTER TABLE memory.queue_turns ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.jobs ENABLE ROW LEVEL SECURITY;

ALTER POLICY conversations_owner ON memory.conversations
    USING (memory._can_read_row(id, user_id, (SELECT memory.current_user_id())))
    WITH CHECK (memory._can_write_row(id, user_id, (SELECT memory.current_user_id())));

ALTER POLICY messages_owner ON memory.conversation_messages
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()))))
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                         WHERE c.id = conversation_id AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()))));

ALTER POLICY summaries_owner ON memory.conversation_summaries
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()))))
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                         WHERE c.id = conversation_id AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()))));

REVOKE INSERT, UPDATE ON memory.conversation_summaries FROM PUBLIC;
GRANT INSERT (conversation_id, covers_through_seq, content, model) ON memory.conversation_summaries TO PUBLIC;
REVOKE ALL ON memory.jobs, memory.queue_turns FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION
    memory._conversation_before_insert(), memory._conversation_before_update(),
    memory._message_before_insert(), memory._message_before_insert_write(), memory._message_before_update(),
    memory._messages_after_delete(),
    memory._summary_before_insert(),
    memory._tool_key_taken(text[]), memory._enqueue_job(text, uuid), memory._jobs_count_queued()
FROM PUBLIC;

DROP FUNCTION memory.add_message(uuid, text, text, jsonb, text, text, jsonb);
-- idempotency_key: a client's key for this append. A retry with the same key and the same message
-- returns the message stored the first time instead of appending it again; the same key with a
-- different message is an error (23505).
CREATE FUNCTION memory.add_message(
    conversation_id uuid,
    role text,
    content text,
    tool_calls jsonb DEFAULT NULL,
    name text DEFAULT NULL,
    tool_call_id text DEFAULT NULL,
    metadata jsonb DEFAULT NULL,
    idempotency_key text DEFAULT NULL
) RETURNS memory.conversation_messages
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.conversation_messages;
BEGIN
    -- seq and token_count are set by the triggers
    INSERT INTO memory.conversation_messages AS m
        (conversation_id, role, content, tool_calls, name, tool_call_id, metadata, idempotency_key, seq, token_count)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0)
    RETURNING m.* INTO v_row;
    IF NOT FOUND THEN  -- the insert trigger found this append already stored under the key
        SELECT m.* INTO v_row FROM memory.conversation_messages m
         WHERE m.conversation_id = $1 AND m.idempotency_key = $8;
    END IF;
    RETURN v_row;
END $$;


CREATE OR REPLACE FUNCTION memory.get_messages(
    conversation_id uuid,
    "limit" integer DEFAULT 50,
    before_seq bigint DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql STABLE
-- walk the (conversation_id, seq) index backwards and stop after the page, even when the
-- statistics think conversations are small (see build_context)
SET search_path = pg_catalog, pg_temp SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
AS $$
DECLARE
    v_result jsonb;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF $2 IS NULL OR $2 < 1 OR $2 > 1000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 1000, got %', coalesce($2::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM memory.conversations c WHERE c.id = $1) THEN
        RAISE EXCEPTION 'conversation % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    -- One row past the page tells whether there is more. A page also ends before it would pass
    -- 64 MB of text (always at least one message), so that it fits in one jsonb value.
    WITH page AS (
        SELECT m.*, row_number() OVER (ORDER BY m.seq DESC) AS rn,
               sum(octet_length(m.content) + coalesce(octet_length(m.tool_calls::text), 0)) OVER (ORDER BY m.seq DESC) AS bytes
          FROM (SELECT * FROM memory.conversation_messages m
                 WHERE m.conversation_id = $1 AND ($3 IS NULL OR m.seq < $3)
                 ORDER BY m.seq DESC
                 LIMIT $2 + 1) m
    ), kept AS (
        SELECT p.*, (p.rn <= $2 AND (p.rn = 1 OR p.bytes <= 67108864)) AS on_page FROM page p
    )
    SELECT jsonb_build_object(
               'messages', coalesce(jsonb_agg(to_jsonb(k) - 'rn' - 'bytes' - 'on_page' - 'conversation_id' ORDER BY k.seq)
                                    FILTER (WHERE k.on_page), '[]'::jsonb),
               'has_more', bool_or(NOT k.on_page),
               'next_before_seq', CASE WHEN bool_or(NOT k.on_page) THEN min(k.seq) FILTER (WHERE k.on_page) END)
      INTO v_result
      FROM kept k;
    v_result := jsonb_set(v_result, '{has_more}', to_jsonb(coalesce((v_result->>'has_more')::boolean, false)));
    RETURN v_result;
END $$;

CREATE OR REPLACE FUNCTION memory.list_conversations(
    agent_id uuid DEFAULT NULL,
    "limit" integer DEFAULT 20
) RETURNS SETOF memory.conversations
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF $2 IS NULL OR $2 < 1 OR $2 > 1000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 1000, got %', coalesce($2::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        SELECT c.* FROM memory.conversations c
         WHERE memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id())) AND ($1 IS NULL OR c.agent_id = $1)
         ORDER BY c.updated_at DESC, c.id
         LIMIT $2;
END $$;

CREATE OR REPLACE FUNCTION memory.delete_conversation(id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (DELETE FROM memory.conversations c WHERE c.id = $1 RETURNING 1)
    SELECT count(*) > 0 FROM gone;
$$;

-- build_context: without max_tokens, the budget of the conversation's agent. (CREATE OR REPLACE
-- drops the function's settings: they are set again as a fresh install sets them.)
CREATE OR REPLACE FUNCTION memory."build_context"(
	"conversation_id" uuid,
	"max_tokens" INT DEFAULT NULL,
	"system_prompt" TEXT DEFAULT NULL
) RETURNS jsonb
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'build_context_wrapper';
-- build_context must walk the (conversation_id, seq) index backwards and stop after the
-- window, whatever the statistics say about the size of this conversation: with a small
-- average conversation the planner would otherwise pick a bitmap scan plus a sort, which reads
-- the whole history of a long one.
ALTER FUNCTION memory.build_context(uuid, integer, text)
    SET enable_sort = off
    SET enable_bitmapscan = off
    SET enable_seqscan = off;
-- It reads through SPI: its search_path is pinned like every other function's.
ALTER FUNCTION memory.build_context(uuid, integer, text) SET search_path = pg_catalog, pg_temp;

-- Agents, chat turns, LLM usage and per-user limits (new in 0.2.0) -------------------------------
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
    -- error: no usable answer (error says why)
    status              text NOT NULL CHECK (status IN ('ok', 'discarded', 'error')),
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
CREATE FUNCTION memory._agent_before_write() RETURNS trigger
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

-- Keeps the day's token counter of the user a call belongs to.
CREATE FUNCTION memory._llm_call_after_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_today date := (now() AT TIME ZONE 'UTC')::date;
    v_tokens bigint := coalesce(NEW.total_tokens, NEW.local_prompt_tokens, 0);
BEGIN
    INSERT INTO memory.user_usage AS u (user_id, minute_start, minute_messages, day_start, day_tokens)
    VALUES (NEW.user_id, '-infinity', 0, v_today, v_tokens)
    ON CONFLICT (user_id) DO UPDATE
       SET day_tokens = CASE WHEN u.day_start = excluded.day_start THEN u.day_tokens + excluded.day_tokens ELSE excluded.day_tokens END,
           day_start = excluded.day_start;
    RETURN NULL;
END $$;

CREATE TRIGGER llm_calls_after_insert AFTER INSERT ON memory.llm_calls
    FOR EACH ROW EXECUTE FUNCTION memory._llm_call_after_insert();

-- Limits ---------------------------------------------------------------------------------------
-- Counts one message against the caller's memory.max_messages_per_minute (fixed one-minute
-- windows); over the limit: PT429 and the insert fails. Keyed by the caller's own identity:
-- calling it directly only spends one's own quota.
CREATE FUNCTION memory._take_message_quota() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user uuid := memory.current_user_id();
    v_max integer := memory._max_messages_per_minute();
    v_minute timestamptz := date_trunc('minute', clock_timestamp());
    v_count integer;
BEGIN
    IF v_user IS NULL OR v_max <= 0 THEN
        RETURN;
    END IF;
    INSERT INTO memory.user_usage AS u (user_id, minute_start, minute_messages, day_start, day_tokens)
    VALUES (v_user, v_minute, 1, (now() AT TIME ZONE 'UTC')::date, 0)
    ON CONFLICT (user_id) DO UPDATE
       SET minute_messages = CASE WHEN u.minute_start = excluded.minute_start THEN u.minute_messages + 1 ELSE 1 END,
           minute_start = excluded.minute_start
    RETURNING u.minute_messages INTO v_count;
    IF v_count > v_max THEN
        RAISE EXCEPTION 'rate limit: more than % messages in one minute; retry after %', v_max, v_minute + interval '1 minute'
            USING ERRCODE = 'PT429',
                  HINT = format('Retry in %s seconds. The operator sets memory.max_messages_per_minute.',
                                ceil(extract(epoch FROM v_minute + interval '1 minute' - clock_timestamp())));
    END IF;
END $$;

-- NULL while p_user is under memory.max_llm_tokens_per_day LLM tokens today (UTC); else the
-- PT429 error to raise, as {sqlstate, message, hint}.
CREATE FUNCTION memory._token_quota_error(p_user uuid) RETURNS jsonb
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
    IF coalesce(v_used, 0) < v_max THEN
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
CREATE FUNCTION memory._raise_error(p_error jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_error IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = p_error->>'sqlstate', MESSAGE = p_error->>'message', HINT = p_error->>'hint';
    END IF;
END $$;

CREATE FUNCTION memory._check_token_quota_of(p_user uuid) RETURNS void
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._raise_error(memory._token_quota_error(p_user));
$$;

-- The caller's own token quota, for memory.chat before it calls the LLM.
CREATE FUNCTION memory._caller_token_quota_error() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._token_quota_error(memory.current_user_id());
$$;

-- memory.chat's record of its LLM call. Works only while memory.chat writes its answer (the
-- library says so), so nobody can write usage rows of their own making; charged to the caller (or, for a caller
-- without identity such as a service role, to the conversation's owner).
CREATE FUNCTION memory._record_chat_call(
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
CREATE FUNCTION memory.create_agent(
    name text,
    system_prompt text DEFAULT NULL,
    model text DEFAULT NULL,
    tools jsonb DEFAULT '[]',
    max_context_tokens integer DEFAULT 8000,
    reply_max_tokens integer DEFAULT 2000,
    temperature real DEFAULT 0.7,
    summarize_threshold integer DEFAULT NULL,
    auto_reply boolean DEFAULT false,
    metadata jsonb DEFAULT '{}'
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
                                    temperature, summarize_threshold, auto_reply, metadata)
    VALUES (v_user, $1, $2, $3, coalesce($4, '[]'), coalesce($5, 8000), coalesce($6, 2000), coalesce($7, 0.7), $8,
            coalesce($9, false), coalesce($10, '{}'))
    RETURNING a.* INTO v_row;
    RETURN v_row;
END $$;

-- Changes the given settings; a NULL argument leaves its setting as it is (set a column to NULL
-- with a plain UPDATE).
CREATE FUNCTION memory.update_agent(
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
    metadata jsonb DEFAULT NULL
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
           metadata = coalesce($11, a.metadata)
     WHERE a.id = $1 AND a.user_id = memory.current_user_id()
    RETURNING a.* INTO v_row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_row;
END $$;

-- Deletes one's own agent. Its conversations stay (agent_id is a plain uuid) and from then on
-- use the defaults: no system prompt, memory.llm_model, an 8000-token window.
CREATE FUNCTION memory.delete_agent(agent_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (DELETE FROM memory.agents a WHERE a.id = $1 AND a.user_id = memory.current_user_id() RETURNING 1)
    SELECT count(*) > 0 FROM gone;
$$;

CREATE FUNCTION memory.get_agent(agent_id uuid) RETURNS memory.agents
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
CREATE FUNCTION memory._request_reply(p_conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_owner uuid;
BEGIN
    IF NOT memory.can_write(p_conversation_id) THEN
        RAISE EXCEPTION 'conversation % does not exist', p_conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT c.user_id INTO v_owner FROM memory.conversations c WHERE c.id = p_conversation_id;
    PERFORM memory._check_token_quota_of(coalesce(memory.current_user_id(), v_owner));
    RETURN memory._enqueue_job('reply', p_conversation_id);
END $$;

CREATE FUNCTION memory.request_reply(conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN memory._request_reply($1);
END $$;

-- A reply job of a conversation the caller may read, or NULL.
CREATE FUNCTION memory._reply_status(p_job_id bigint) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('id', j.id, 'conversation_id', j.conversation_id, 'status', j.status,
                              'attempts', j.attempts, 'last_error', j.last_error, 'run_after', j.run_after,
                              'message_id', j.payload->'message_id', 'created_at', j.created_at, 'updated_at', j.updated_at)
      FROM memory.jobs j
     WHERE j.id = p_job_id AND j.kind = 'reply' AND memory.can_read(j.conversation_id);
$$;

CREATE FUNCTION memory.reply_status(job_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
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
-- whoever may read a conversation may read the agent that applies to it
CREATE POLICY agents_of_readable_conversations ON memory.agents FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.agent_id = agents.id AND c.user_id = agents.user_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()))));

CREATE POLICY llm_calls_owner ON memory.llm_calls FOR SELECT
    USING (user_id = (SELECT memory.current_user_id()));

GRANT SELECT, INSERT, UPDATE, DELETE ON memory.agents TO PUBLIC;
GRANT SELECT ON memory.llm_calls TO PUBLIC;
REVOKE ALL ON memory.user_usage FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION
    memory._agent_before_write(), memory._llm_call_after_insert(), memory._check_token_quota_of(uuid),
    memory._token_quota_error(uuid)
FROM PUBLIC;

-- Chat turns -----------------------------------------------------------------------------------
-- The synchronous turn: appends the user's message, then memory._chat_answer (the library) builds
-- the agent's window, calls the LLM, stores the answer and records the call. In the caller's
-- transaction: on any failure nothing is written.
CREATE FUNCTION memory._start_turn(p_conversation_id uuid) RETURNS void
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

CREATE FUNCTION memory._finish_turn(p_answer jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._raise_error(p_answer->'error');
    RETURN p_answer;
END $$;

CREATE FUNCTION memory.chat(conversation_id uuid, content text, metadata jsonb DEFAULT NULL) RETURNS jsonb
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
-- previous answer's tool calls.
CREATE FUNCTION memory.continue_chat(conversation_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._start_turn($1);
    RETURN memory._finish_turn(memory._chat_answer($1));
END $$;

-- The Rust half of a turn reads the window like build_context, so its plans are pinned to the
-- index the same way (see context.sql), and its search_path like every other function's.
ALTER FUNCTION memory._chat_answer(uuid)
    SET enable_sort = off
    SET enable_bitmapscan = off
    SET enable_seqscan = off;
ALTER FUNCTION memory._chat_answer(uuid) SET search_path = pg_catalog, pg_temp;

-- History, sharing and archive (new in 0.2.0) ------------------------------------------------
-- search: every message's words in a tsvector, filled for the stored messages, and its index
CREATE FUNCTION memory."_search_config"() RETURNS TEXT
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_search_config_wrapper';

CREATE FUNCTION memory._conversation_lexeme(conversation_id uuid) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'conv' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.uuid_send($1), 'hex')
$$;
CREATE FUNCTION memory._search_vector(config regconfig, conversation_id uuid, content text, tool_calls jsonb) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_calls text;
BEGIN
    IF $1 IS NULL THEN  -- memory.search_config = 'off'
        RETURN NULL;
    END IF;
    IF jsonb_typeof($4) = 'array' THEN
        SELECT string_agg(concat_ws(' ', c.call->'function'->>'name', c.call->'function'->>'arguments', c.call->>'tool',
                                    c.call->>'input', c.call->>'output'), ' ')
          INTO v_calls FROM jsonb_array_elements($4) AS c(call);
    END IF;
    RETURN to_tsvector($1, left(concat_ws(' ', $3, v_calls), 200000))
           || array_to_tsvector(ARRAY[memory._conversation_lexeme($2)]);
END;
$$;

ALTER TABLE memory.conversation_messages ADD COLUMN search_vector tsvector;
UPDATE memory.conversation_messages
   SET search_vector = memory._search_vector(memory._search_config()::regconfig, conversation_id, content, tool_calls);
CREATE INDEX conversation_messages_search_idx ON memory.conversation_messages USING gin (search_vector)
    WITH (gin_pending_list_limit = 512);

-- tool-call probes read the index, not a pending list (see tables.sql)
ALTER INDEX memory.conversation_messages_tool_keys_idx SET (fastupdate = off);
SELECT pg_catalog.gin_clean_pending_list('memory.conversation_messages_tool_keys_idx');

-- the server's retention jobs
ALTER TABLE memory.jobs DROP CONSTRAINT jobs_kind_check,
    ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('summary', 'reply', 'retention'));

-- sharing: members, the authorization rule with its three rights, and the policies that apply it
ALTER TABLE memory.conversations ADD COLUMN archived_at timestamptz;
-- Who else may use a conversation: viewers read it, editors also append to it (see access.sql).
-- owner_id repeats the conversation's owner so that the table's own policy needs no look-up of
-- conversations (whose policy reads this table).
CREATE TABLE memory.conversation_members (
    conversation_id uuid NOT NULL REFERENCES memory.conversations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL,
    role            text NOT NULL CHECK (role IN ('viewer', 'editor')),
    owner_id        uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user_idx ON memory.conversation_members (user_id, role);

SELECT pg_catalog.pg_extension_config_dump('memory.conversation_members', '');
ALTER TABLE memory.conversation_members ENABLE ROW LEVEL SECURITY;
GRANT SELECT ON memory.conversation_members TO PUBLIC;
DROP POLICY conversations_owner ON memory.conversations;
DROP POLICY messages_owner ON memory.conversation_messages;
DROP POLICY summaries_owner ON memory.conversation_summaries;
DROP POLICY agents_of_readable_conversations ON memory.agents;
DROP FUNCTION memory.can_read(uuid), memory.can_write(uuid);
DROP FUNCTION memory._can_read_row(uuid, uuid, uuid), memory._can_write_row(uuid, uuid, uuid);

-- The one authorization rule. Every policy, public function and SECURITY DEFINER helper asks
-- these questions and nothing else, so that who may do what with a conversation is decided in
-- exactly one place:
--   read   (messages, build_context, export, search, fork): its owner and its members;
--   write  (append messages, summaries, request summaries and replies): its owner and its editors;
--   manage (title, agent, metadata, archive, delete, remove messages, share): its owner alone.
-- A role that bypasses RLS (superuser, Supabase's service_role) may do all three, as RLS lets it.
--
-- _can_read_row/_can_write_row/_can_manage_row judge a conversation row (its id and owner) for a
-- caller. They are plain SQL that PostgreSQL inlines into the policies, so the owner test stays an
-- index condition; for that they cannot pin search_path, and instead qualify every operator. The
-- policies pass the caller as (SELECT memory.current_user_id()) and the conversations shared with
-- the caller as (SELECT memory._shared_with(...)): each computed once per query, and the shared
-- list only when a row is not the caller's own (an owner's queries never read the members table).
CREATE FUNCTION memory._can_read_row(conversation_id uuid, owner uuid, caller uuid, shared uuid[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $2 OPERATOR(pg_catalog.=) $3 OR $1 OPERATOR(pg_catalog.=) ANY ($4)
$$;

CREATE FUNCTION memory._can_write_row(conversation_id uuid, owner uuid, caller uuid, editable uuid[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $2 OPERATOR(pg_catalog.=) $3 OR $1 OPERATOR(pg_catalog.=) ANY ($4)
$$;

CREATE FUNCTION memory._can_manage_row(owner uuid, caller uuid) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $1 OPERATOR(pg_catalog.=) $2
$$;

-- The conversations shared with `caller`: all of them, or those it may write (editors_only).
-- Under the members table's RLS a caller sees its own memberships only, so asking about someone
-- else returns nothing.
CREATE FUNCTION memory._shared_with(caller uuid, editors_only boolean) RETURNS uuid[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(m.conversation_id), '{}')
      FROM memory.conversation_members m
     WHERE m.user_id = $1 AND (NOT $2 OR m.role = 'editor');
$$;

-- The same rule by conversation id, for SECURITY DEFINER helpers (which run outside RLS) and for
-- callers who want to ask. Reveals nothing: false for a conversation that does not exist and for
-- one the caller may not see alike.
CREATE FUNCTION memory.can_read(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = $1 AND (memory._caller_bypasses_rls()
                                         OR memory._can_read_row(c.id, c.user_id, memory.current_user_id(),
                                                                 memory._shared_with(memory.current_user_id(), false))));
$$;

CREATE FUNCTION memory.can_write(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = $1 AND (memory._caller_bypasses_rls()
                                         OR memory._can_write_row(c.id, c.user_id, memory.current_user_id(),
                                                                  memory._shared_with(memory.current_user_id(), true))));
$$;

CREATE FUNCTION memory.can_manage(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = $1 AND (memory._caller_bypasses_rls()
                                         OR memory._can_manage_row(c.user_id, memory.current_user_id())));
$$;

-- Raises unless the caller may do `action` ('read', 'write' or 'manage') with the conversation:
-- P0002 "does not exist" when it cannot even read it (nothing is revealed), 42501 naming what the
-- caller lacks when it is a member without that right.
CREATE FUNCTION memory._require(conversation_id uuid, action text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT memory.can_read($1) THEN
        RAISE EXCEPTION 'conversation % does not exist', coalesce($1::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    IF $2 = 'write' AND NOT memory.can_write($1) THEN
        RAISE EXCEPTION 'conversation % is shared with you read-only', $1
            USING ERRCODE = 'insufficient_privilege', HINT = 'Its owner can make you an editor.';
    END IF;
    IF $2 = 'manage' AND NOT memory.can_manage($1) THEN
        RAISE EXCEPTION 'only the owner of conversation % may do this', $1 USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- conversations: read by owner and members; created, changed and deleted by the owner
CREATE POLICY conversations_read ON memory.conversations FOR SELECT
    USING (memory._can_read_row(id, user_id, (SELECT memory.current_user_id()),
                                (SELECT memory._shared_with((SELECT memory.current_user_id()), false))));
CREATE POLICY conversations_owner ON memory.conversations
    USING (memory._can_manage_row(user_id, (SELECT memory.current_user_id())))
    WITH CHECK (memory._can_manage_row(user_id, (SELECT memory.current_user_id())));

-- messages: read with the conversation, appended (and their metadata changed) by owner and
-- editors, removed by the owner
CREATE POLICY messages_read ON memory.conversation_messages FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));
CREATE POLICY messages_append ON memory.conversation_messages FOR INSERT
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), true)))));
CREATE POLICY messages_update ON memory.conversation_messages FOR UPDATE
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), true)))))
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), true)))));
CREATE POLICY messages_remove ON memory.conversation_messages FOR DELETE
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_manage_row(c.user_id, (SELECT memory.current_user_id()))));

-- summaries: read with the conversation, added by owner and editors, removed by the owner
CREATE POLICY summaries_read ON memory.conversation_summaries FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));
CREATE POLICY summaries_add ON memory.conversation_summaries FOR INSERT
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), true)))));
CREATE POLICY summaries_remove ON memory.conversation_summaries FOR DELETE
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_manage_row(c.user_id, (SELECT memory.current_user_id()))));

-- members: each member sees its own memberships, the owner all of its conversations'; written
-- only through memory.share_conversation and memory.unshare_conversation
CREATE POLICY members_visible ON memory.conversation_members FOR SELECT
    USING (user_id = (SELECT memory.current_user_id()) OR owner_id = (SELECT memory.current_user_id()));

-- whoever may read a conversation may read the agent that applies to it
CREATE POLICY agents_of_readable_conversations ON memory.agents FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.agent_id = agents.id AND c.user_id = agents.user_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                               (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));

CREATE OR REPLACE FUNCTION memory._request_summary(p_conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._require(p_conversation_id, 'write');
    RETURN memory._enqueue_job('summary', p_conversation_id);
END $$;

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
        octet_length(NEW.content) + coalesce(pg_column_size(NEW.tool_calls), 0) + coalesce(octet_length(NEW.tool_call_id), 0),
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
    -- the search index belongs to memory_ext (memory.reindex_search runs as its owner)
    IF NEW.search_vector IS DISTINCT FROM OLD.search_vector AND NOT memory._current_role_is_superuser() THEN
        RAISE EXCEPTION 'search_vector is maintained by memory_ext' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

-- counters once per INSERT statement instead of once per row
CREATE OR REPLACE FUNCTION memory._message_before_insert_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_clash    text;
    v_encoding text;
    v_last     bigint;
    v_newest   bigint;
    v_seq      bigint;
    v_prev     memory.conversation_messages;
    v_prefix   text := NEW.conversation_id::text;
BEGIN
    -- Lock the conversation: appends to it serialise here, until the transaction ends. (Here, as
    -- the owner: under RLS a row lock would need the right to update the conversation, which an
    -- editor does not have.)
    SELECT c.encoding, c.last_seq INTO v_encoding, v_last
      FROM memory.conversations c WHERE c.id = NEW.conversation_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', NEW.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    -- A retried append (same idempotency key, same message) is already stored: skip it. Under the
    -- lock, so concurrent retries see each other.
    IF NEW.idempotency_key IS NOT NULL THEN
        SELECT m.* INTO v_prev FROM memory.conversation_messages m
         WHERE m.conversation_id = NEW.conversation_id AND m.idempotency_key = NEW.idempotency_key;
        IF FOUND THEN
            IF (v_prev.role, v_prev.content, v_prev.name, v_prev.tool_calls, v_prev.tool_call_id)
               IS NOT DISTINCT FROM (NEW.role, NEW.content, NEW.name, NEW.tool_calls, NEW.tool_call_id) THEN
                RETURN NULL;
            END IF;
            RAISE EXCEPTION 'idempotency_key "%" was already used for a different message (seq %) of this conversation',
                left(NEW.idempotency_key, 80), v_prev.seq
                USING ERRCODE = 'unique_violation', HINT = 'Use a new key for each new message; reuse a key only to retry the same append.';
        END IF;
    END IF;
    -- seq: after the conversation's high-water mark (kept across rewinds) and after the rows this
    -- statement has already inserted (a row-level BEFORE trigger sees those).
    SELECT m.seq INTO v_newest FROM memory.conversation_messages m
     WHERE m.conversation_id = NEW.conversation_id ORDER BY m.seq DESC LIMIT 1;
    v_seq := greatest(v_last, coalesce(v_newest, 0)) + 1;
    -- The encoding may change only while a conversation has no messages: for its first message
    -- count again under the lock, in case it changed after messages_before_insert counted.
    IF v_newest IS NULL THEN
        NEW.token_count := memory.message_tokens(NEW.role, NEW.content, NEW.tool_calls, NEW.name, v_encoding, NEW.tool_call_id);
    END IF;

    IF NEW.tool_calls IS NOT NULL THEN
        v_clash := memory._tool_key_taken(
            ARRAY(SELECT v_prefix || kind || (call->>'id')
                    FROM jsonb_array_elements(NEW.tool_calls) AS call, unnest(ARRAY['/c/', '/g/']) AS kind));
        IF v_clash IS NOT NULL THEN
            RAISE EXCEPTION 'duplicate tool call id "%": an earlier message of this conversation already made that call', left(substr(v_clash, 40), 80)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF NEW.role = 'tool' THEN
        IF memory._tool_key_taken(ARRAY[v_prefix || '/c/' || NEW.tool_call_id]) IS NULL THEN
            RAISE EXCEPTION 'tool_call_id "%" matches no earlier assistant tool call in this conversation', left(NEW.tool_call_id, 80)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF memory._tool_key_taken(ARRAY[v_prefix || '/r/' || NEW.tool_call_id]) IS NOT NULL THEN
            RAISE EXCEPTION 'tool call "%" already has a result', left(NEW.tool_call_id, 80)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    NEW.seq := v_seq;
    NEW.created_at := coalesce(NEW.created_at, now());
    RETURN NEW;
END $$;

CREATE FUNCTION memory._messages_after_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r           record;
    v_threshold bigint;
    v_agent_threshold integer;
    v_auto_reply boolean;
BEGIN
    FOR r IN
        WITH a AS (SELECT n.conversation_id, count(*) AS n, sum(n.token_count) AS t, max(n.seq) AS last_seq,
                          bool_or(n.role = 'user') AS has_user
                     FROM added n GROUP BY n.conversation_id)
        UPDATE memory.conversations c
           SET message_count = c.message_count + a.n,
               total_tokens = c.total_tokens + a.t,
               last_seq = greatest(c.last_seq, a.last_seq),
               updated_at = now()
          FROM a
         WHERE c.id = a.conversation_id
        RETURNING c.id, c.total_tokens, c.agent_id, c.user_id, a.has_user
    LOOP
        -- the conversation's agent, when one of its owner's agents has that id (see agents.sql)
        v_agent_threshold := NULL;
        v_auto_reply := false;
        SELECT ag.summarize_threshold, ag.auto_reply INTO v_agent_threshold, v_auto_reply
          FROM memory.agents ag WHERE ag.id = r.agent_id AND ag.user_id = r.user_id;
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
    END LOOP;
    IF memory._notify_messages() THEN
        PERFORM pg_notify('memory_messages',
                          json_build_object('conversation_id', n.conversation_id, 'id', n.id, 'seq', n.seq)::text)
           FROM (SELECT * FROM added ORDER BY conversation_id, seq) n;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_after_insert AFTER INSERT ON memory.conversation_messages
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION memory._messages_after_insert();

REVOKE EXECUTE ON FUNCTION memory._messages_after_insert() FROM PUBLIC;

DROP FUNCTION memory.get_messages(uuid, integer, bigint);
CREATE FUNCTION memory.get_messages(
    conversation_id uuid,
    "limit" integer DEFAULT 50,
    before_seq bigint DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql STABLE
-- walk the (conversation_id, seq) index backwards and stop after the page, even when the
-- statistics think conversations are small (see build_context)
SET search_path = pg_catalog, pg_temp SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
AS $$
DECLARE
    v_result jsonb;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF $2 IS NULL OR $2 < 1 OR $2 > 1000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 1000, got %', coalesce($2::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM memory.conversations c WHERE c.id = $1) THEN
        RAISE EXCEPTION 'conversation % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    -- One row past the page tells whether there is more. A page also ends before it would pass
    -- 64 MB of text (always at least one message), so that it fits in one jsonb value.
    WITH page AS (
        SELECT m.*, row_number() OVER (ORDER BY m.seq DESC) AS rn,
               sum(octet_length(m.content) + coalesce(octet_length(m.tool_calls::text), 0)) OVER (ORDER BY m.seq DESC) AS bytes
          FROM (SELECT * FROM memory.conversation_messages m
                 WHERE m.conversation_id = $1 AND ($3 IS NULL OR m.seq < $3)
                 ORDER BY m.seq DESC
                 LIMIT $2 + 1) m
    ), kept AS (
        SELECT p.*, (p.rn <= $2 AND (p.rn = 1 OR p.bytes <= 67108864)) AS on_page FROM page p
    )
    SELECT jsonb_build_object(
               'messages', coalesce(jsonb_agg(to_jsonb(k) - 'rn' - 'bytes' - 'on_page' - 'conversation_id' - 'search_vector' ORDER BY k.seq)
                                    FILTER (WHERE k.on_page), '[]'::jsonb),
               'has_more', bool_or(NOT k.on_page),
               'next_before_seq', CASE WHEN bool_or(NOT k.on_page) THEN min(k.seq) FILTER (WHERE k.on_page) END)
      INTO v_result
      FROM kept k;
    v_result := jsonb_set(v_result, '{has_more}', to_jsonb(coalesce((v_result->>'has_more')::boolean, false)));
    RETURN v_result;
END $$;

-- create_conversation gains template_id, list_conversations its filters
DROP FUNCTION memory.create_conversation(uuid, text, jsonb, text);
DROP FUNCTION memory.list_conversations(uuid, integer);

CREATE FUNCTION memory.create_conversation(
    agent_id uuid,
    title text DEFAULT NULL,
    metadata jsonb DEFAULT '{}',
    encoding text DEFAULT NULL,
    template_id uuid DEFAULT NULL
) RETURNS memory.conversations
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.conversations;
    v_user uuid := memory.current_user_id();
    v_template_agent uuid;
    v_template_messages jsonb;
BEGIN
    IF $5 IS NOT NULL THEN
        SELECT t.agent_id, t.messages INTO v_template_agent, v_template_messages
          FROM memory.conversation_templates t WHERE t.id = $5;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'template % does not exist', $5 USING ERRCODE = 'no_data_found';
        END IF;
    END IF;
    IF coalesce($1, v_template_agent) IS NULL THEN
        RAISE EXCEPTION 'agent_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'no user identity: memory.current_user_id() is NULL'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Through PostgREST/Supabase send a JWT with a sub claim; from psql or an application server SET memory.user_id = ''<uuid>''.';
    END IF;
    INSERT INTO memory.conversations AS c (agent_id, user_id, title, metadata, encoding)
    VALUES (coalesce($1, v_template_agent), v_user, $2, coalesce($3, '{}'), $4)
    RETURNING c.* INTO v_row;
    IF $5 IS NOT NULL THEN
        PERFORM memory._append_all(v_row.id, v_template_messages, 'template');
        SELECT c.* INTO v_row FROM memory.conversations c WHERE c.id = v_row.id;
    END IF;
    RETURN v_row;
END $$;

-- A row of list_conversations: the conversation and what the caller is to it ('owner', 'editor'
-- or 'viewer').
CREATE TYPE memory.listed_conversation AS (
    id            uuid,
    agent_id      uuid,
    user_id       uuid,
    title         text,
    encoding      text,
    total_tokens  bigint,
    message_count integer,
    last_seq      bigint,
    metadata      jsonb,
    created_at    timestamptz,
    updated_at    timestamptz,
    archived_at   timestamptz,
    access        text
);

CREATE FUNCTION memory.list_conversations(
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
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
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
    -- Two sources, each read in index order and cut at the page size, merged: the caller's own
    -- conversations (index on user_id, updated_at) and its memberships. RLS still applies to both.
    RETURN QUERY EXECUTE format($q$
        SELECT x.* FROM (
            (SELECT c.*, 'owner'::text AS access FROM memory.conversations c
              WHERE $9 IS NOT TRUE AND c.user_id = $10 %1$s)
            UNION ALL
            (SELECT c.*, m.role FROM memory.conversation_members m JOIN memory.conversations c ON c.id = m.conversation_id
              WHERE $9 IS NOT FALSE AND m.user_id = $10 %1$s)
        ) x
        ORDER BY x.updated_at DESC, x.id
        LIMIT $2$q$, v_filter)
    USING $1, $2, $3, $4, $5, $6, $7, $8, $9, memory.current_user_id();
END $$;

-- ---- export ------------------------------------------------------------------------------------

-- Markdown helpers. Every message body goes into a fenced block whose fence is longer than any
-- run of backticks in it, so no content (code fences, HTML, headings) can end the block or be
-- rendered as markup; one-line fields (title, names, ids) are escaped instead.
CREATE FUNCTION memory._md_fenced(p_text text, p_info text DEFAULT '') RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT f || p_info || E'\n' || p_text || E'\n' || f
      FROM (SELECT repeat('`', greatest(3, coalesce((SELECT max(length(m[1])) FROM regexp_matches(p_text, '(`+)', 'g') AS m), 0) + 1)) AS f) x
$$;

CREATE FUNCTION memory._md_inline(p_text text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT regexp_replace(
               replace(replace(replace(regexp_replace(left(coalesce(p_text, ''), 500), '[\r\n\t]+', ' ', 'g'),
                                       '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
               '([\\`*_{}\[\]()#+!|~-])', '\\\1', 'g')
$$;

CREATE FUNCTION memory._md_message(p_m memory.conversation_messages) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT concat_ws(E'\n\n',
        format('### %s · #%s · %s%s', p_m.role, p_m.seq, to_char(p_m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
               CASE WHEN p_m.name IS NOT NULL THEN ' · ' || memory._md_inline(p_m.name) ELSE '' END)
        || CASE WHEN p_m.tool_call_id IS NOT NULL THEN E'\n\nResult of tool call ' || memory._md_inline(p_m.tool_call_id) ELSE '' END,
        CASE WHEN p_m.content <> '' OR p_m.tool_calls IS NULL THEN memory._md_fenced(p_m.content, 'text') END,
        (SELECT string_agg(
                    CASE WHEN call ? 'function' THEN
                        format('**Tool call** %s (%s)', memory._md_inline(call->'function'->>'name'), memory._md_inline(call->>'id'))
                        || E'\n\n' || memory._md_fenced(coalesce(call->'function'->>'arguments', ''), 'json')
                    ELSE
                        format('**Tool call** %s (%s)', memory._md_inline(call->>'tool'), memory._md_inline(call->>'id'))
                        || E'\n\n' || memory._md_fenced(jsonb_pretty(coalesce(call->'input', '{}')), 'json')
                        || E'\n\n**Result**\n\n'
                        || memory._md_fenced(CASE WHEN jsonb_typeof(call->'output') = 'string' THEN call->>'output'
                                                  ELSE coalesce(jsonb_pretty(call->'output'), '') END, 'text')
                    END, E'\n\n' ORDER BY n)
           FROM jsonb_array_elements(p_m.tool_calls) WITH ORDINALITY AS t(call, n)))
$$;

-- The json export of a conversation, of its messages up to p_upto (NULL: all), as whoever calls
-- it may read them (share links call it as the owner).
CREATE FUNCTION memory._export_json(p_conv memory.conversations, p_upto bigint) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'format', 'memory_ext.conversation',
        'version', 1,
        'conversation', jsonb_build_object(
            'id', p_conv.id, 'agent_id', p_conv.agent_id, 'title', p_conv.title, 'encoding', p_conv.encoding,
            'metadata', p_conv.metadata,
            'message_count', CASE WHEN p_upto IS NULL THEN p_conv.message_count ELSE x.n END,
            'total_tokens', CASE WHEN p_upto IS NULL THEN p_conv.total_tokens ELSE coalesce(x.t, 0) END,
            'created_at', p_conv.created_at, 'updated_at', p_conv.updated_at),
        'messages', coalesce(x.messages, '[]'),
        'summaries', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'id', s.id, 'covers_through_seq', s.covers_through_seq, 'content', s.content, 'model', s.model,
                       'token_count', s.token_count, 'covered_tokens', s.covered_tokens, 'created_at', s.created_at)
                       ORDER BY s.covers_through_seq, s.id)
              FROM memory.conversation_summaries s
             WHERE s.conversation_id = p_conv.id AND (p_upto IS NULL OR s.covers_through_seq <= p_upto)), '[]'))
      FROM (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                       'id', m.id, 'seq', m.seq, 'role', m.role, 'content', m.content, 'name', m.name,
                       'tool_calls', m.tool_calls, 'tool_call_id', m.tool_call_id, 'metadata', m.metadata,
                       'token_count', m.token_count, 'created_at', m.created_at, 'idempotency_key', m.idempotency_key))
                       ORDER BY m.seq) AS messages,
                   count(*) AS n, sum(m.token_count) AS t
              FROM memory.conversation_messages m
             WHERE m.conversation_id = p_conv.id AND (p_upto IS NULL OR m.seq <= p_upto)) x;
$$;

-- format: 'json' (lossless and versioned: the conversation, its messages with seq, tool calls,
-- metadata and timestamps, and its summaries; what import_conversation reads), 'markdown' (for
-- people, as a JSON string: `#>> '{}'` gives the text), 'openai' ({"messages": [...]}: the whole
-- conversation as a /chat/completions payload, the agent's system prompt first; one line of a
-- JSONL fine-tuning file).
CREATE FUNCTION memory.export_conversation(id uuid, format text DEFAULT 'json') RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_conv memory.conversations;
BEGIN
    IF $1 IS NULL OR $2 IS NULL THEN
        RAISE EXCEPTION 'id and format must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF $2 NOT IN ('json', 'markdown', 'openai') THEN
        RAISE EXCEPTION 'unknown export format "%"', left($2, 80)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use json, markdown or openai.';
    END IF;
    SELECT c.* INTO v_conv FROM memory.conversations c WHERE c.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    IF $2 = 'openai' THEN
        RETURN jsonb_build_object('messages', memory.build_context($1, 2147483647)->'messages');
    END IF;
    IF $2 = 'markdown' THEN
        RETURN to_jsonb(concat_ws(E'\n\n',
            '# ' || CASE WHEN coalesce(v_conv.title, '') = '' THEN 'Conversation' ELSE memory._md_inline(v_conv.title) END,
            format('%s messages · %s tokens (%s) · started %s', v_conv.message_count, v_conv.total_tokens, v_conv.encoding,
                   to_char(v_conv.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')),
            (SELECT string_agg(memory._md_message(m), E'\n\n' ORDER BY m.seq)
               FROM memory.conversation_messages m WHERE m.conversation_id = $1)) || E'\n');
    END IF;
    RETURN memory._export_json(v_conv, NULL);
END $$;

-- ---- import ------------------------------------------------------------------------------------

-- The summaries' created_at an export carries (callers may not write that column). Only for the
-- caller's own conversation. The conversation's updated_at is not restored: the import is its
-- latest activity, and a caller who could set it could keep a conversation from ever aging.
CREATE FUNCTION memory._import_summary_times(p_conversation_id uuid, p_times jsonb) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    UPDATE memory.conversation_summaries s SET created_at = (t.value #>> '{}')::timestamptz
      FROM memory.conversations c, jsonb_each(coalesce(p_times, '{}')) t
     WHERE c.id = p_conversation_id AND c.user_id = memory.current_user_id()
       AND s.conversation_id = c.id AND s.id::text = t.key AND jsonb_typeof(t.value) = 'string';
$$;

-- The bulk path of an import: the messages of a conversation import_conversation just created
-- (the caller's, still empty), checked as a set with the same functions the insert triggers use
-- (message_tokens validates and counts, _check_message_limits bounds sizes; tool calls unique,
-- every result answering an earlier OpenAI call, once; the table's constraints), then written in
-- one INSERT with the triggers off and the counters set once. It only ever refuses more than the
-- per-row path: import_conversation falls back to that path whenever this one fails, so the
-- rules and errors are add_message's.
CREATE FUNCTION memory._import_messages(p_conversation_id uuid, p_messages jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET session_replication_role = replica AS $$
DECLARE
    v_encoding text;
    v_config   regconfig := memory._search_config()::regconfig;
BEGIN
    SELECT c.encoding INTO v_encoding FROM memory.conversations c
     WHERE c.id = p_conversation_id AND c.user_id = memory.current_user_id() AND c.last_seq = 0
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % is not an empty conversation of the caller', p_conversation_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_messages) AS t(e)
                WHERE jsonb_typeof(t.e) <> 'object' OR jsonb_typeof(t.e->'content') NOT IN ('string', 'null')) THEN
        RAISE EXCEPTION 'a message must be an object whose content is a string' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM memory._check_message_limits(
                octet_length(coalesce(t.e->>'content', '')) + coalesce(pg_column_size(nullif(t.e->'tool_calls', 'null')), 0)
                + coalesce(octet_length(t.e->>'tool_call_id'), 0),
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

-- Appends a whole array of messages to an empty conversation of the caller (an import, a
-- template): the bulk path first (one statement; the per-minute limit counts every message); when
-- it refuses anything, every message goes through add_message's triggers instead, in one
-- subtransaction around the loop (not one per message), and the first one refused fails the whole
-- call with its index (0-based) in the message and the trigger's SQLSTATE.
CREATE FUNCTION memory._append_all(p_conversation_id uuid, p_messages jsonb, p_what text) RETURNS void
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
        IF memory._message_limit_applies() THEN
            PERFORM memory._take_message_quota() FROM generate_series(1, jsonb_array_length(p_messages));
        END IF;
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

-- data: an export in format json (version 1), {"messages": [...]} (the openai export, a JSONL
-- line), or a plain OpenAI messages array. A new conversation of the caller is created (the
-- export's ids are not reused); agent_id and title override the export's. All or nothing: the
-- first message that add_message would refuse fails the import with its index (0-based) in the
-- message and add_message's SQLSTATE.
CREATE FUNCTION memory.import_conversation(data jsonb, agent_id uuid DEFAULT NULL, title text DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_conv     jsonb := '{}';
    v_messages jsonb;
    v_summaries jsonb := '[]';
    v_id       uuid;
    v_agent    uuid;
    v_i        integer := -1;
    v_state    text;
    v_text     text;
    v_times    jsonb := '{}';
    v_sid      bigint;
    v_s        jsonb;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'data must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF memory.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'no user identity: memory.current_user_id() is NULL' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF jsonb_typeof($1) = 'array' THEN
        v_messages := $1;
    ELSIF jsonb_typeof($1) = 'object' AND $1 ? 'format' THEN
        IF $1->>'format' IS DISTINCT FROM 'memory_ext.conversation' OR ($1->>'version') IS DISTINCT FROM '1' THEN
            RAISE EXCEPTION 'unsupported export: format "%" version %', left($1->>'format', 80), left($1->>'version', 20)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'This version reads format memory_ext.conversation version 1, {"messages": [...]} or an array of messages.';
        END IF;
        v_conv := coalesce($1->'conversation', '{}');
        v_messages := $1->'messages';
        v_summaries := coalesce($1->'summaries', '[]');
    ELSIF jsonb_typeof($1) = 'object' AND $1 ? 'messages' THEN
        v_messages := $1->'messages';
    END IF;
    IF jsonb_typeof(v_messages) IS DISTINCT FROM 'array' OR jsonb_typeof(v_conv) <> 'object'
       OR jsonb_typeof(v_summaries) <> 'array' THEN
        RAISE EXCEPTION 'data is not an export of memory_ext nor an array of messages'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass export_conversation(id, ''json'') output, {"messages": [...]} or [{"role": …, "content": …}, …].';
    END IF;
    IF jsonb_array_length(v_messages) > 100000 THEN
        RAISE EXCEPTION 'an import holds at most 100000 messages, got %', jsonb_array_length(v_messages)
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Import the rest with add_message.';
    END IF;
    BEGIN
        v_agent := coalesce($2, (v_conv->>'agent_id')::uuid, '00000000-0000-0000-0000-000000000000');
        INSERT INTO memory.conversations AS c (agent_id, title, metadata, encoding, created_at)
        VALUES (v_agent, coalesce($3, v_conv->>'title'), coalesce(v_conv->'metadata', '{}'), v_conv->>'encoding',
                (v_conv->>'created_at')::timestamptz)
        RETURNING c.id INTO v_id;
    EXCEPTION WHEN invalid_text_representation OR datetime_field_overflow OR invalid_datetime_format THEN
        GET STACKED DIAGNOSTICS v_text = MESSAGE_TEXT;
        RAISE EXCEPTION 'the conversation of the import: %', v_text USING ERRCODE = 'invalid_parameter_value';
    END;
    PERFORM memory._append_all(v_id, v_messages, 'import');
    -- Summaries cover messages by seq: the import numbers messages 1..n, so a summary that covered
    -- the export's seq s covers the imported messages whose exported seq is at most s.
    v_i := -1;
    BEGIN
        FOR v_s IN SELECT e FROM jsonb_array_elements(v_summaries) AS e LOOP
            v_i := v_i + 1;
            INSERT INTO memory.conversation_summaries AS s (conversation_id, covers_through_seq, content, model)
            VALUES (v_id,
                    (SELECT count(*) FROM jsonb_array_elements(v_messages) AS m
                      WHERE (m->>'seq')::bigint <= (v_s->>'covers_through_seq')::bigint),
                    v_s->>'content', coalesce(v_s->>'model', 'import'))
            RETURNING s.id INTO v_sid;
            v_times := v_times || jsonb_build_object(v_sid::text, v_s->'created_at');
        END LOOP;
        PERFORM memory._import_summary_times(v_id, v_times);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_text = MESSAGE_TEXT;
        RAISE EXCEPTION 'summary % of the import: %', v_i, v_text
            USING ERRCODE = CASE WHEN v_state LIKE '22%' OR v_state LIKE '23%' THEN '22023' ELSE v_state END;
    END;
    -- the bulk path wrote no job: the threshold check of the whole history, once
    IF memory.should_summarize(v_id) THEN
        PERFORM memory.request_summary(v_id);
    END IF;
    RETURN v_id;
END $$;

-- ---- fork and rewind -----------------------------------------------------------------------------

-- A hint when cutting a conversation after p_at would separate a tool call (at or before p_at)
-- from a result after it; NULL when the cut is clean. Called by the definer helpers below (no
-- RLS), so that the GIN index of tool keys finds each call.
CREATE FUNCTION memory._tool_group_cut(p_conversation_id uuid, p_at bigint) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
    SELECT format('the tool call at seq %s has its result at seq %s', c.seq, r.seq)
      FROM memory.conversation_messages r
      CROSS JOIN LATERAL (
            SELECT m.seq FROM memory.conversation_messages m
             WHERE (m.tool_calls IS NOT NULL OR m.tool_call_id IS NOT NULL)
               AND memory._tool_keys(m.conversation_id, m.tool_calls, m.tool_call_id)
                   && ARRAY[r.conversation_id::text || '/c/' || r.tool_call_id]
             LIMIT 1) c
     WHERE r.conversation_id = p_conversation_id AND r.seq > p_at AND r.tool_call_id IS NOT NULL
       AND c.seq <= p_at
     ORDER BY r.seq
     LIMIT 1
$$;

-- The whole fork, as the owner with triggers off: the rows copied were validated and counted
-- when they were appended (same encoding, so the same token counts), and the counters are set
-- once. Triggers off also means no NOTIFY and no jobs for the copy.
CREATE FUNCTION memory._fork_conversation(p_source uuid, p_at bigint, p_title text) RETURNS uuid
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

-- A new conversation of the caller with messages 1..at_seq of a conversation the caller can read
-- (default: all of them), the summaries that cover no more than that, the same agent and
-- encoding, and metadata.forked_from = {conversation_id, at_seq}. Messages are numbered 1..n in
-- the copy. An at_seq that would separate a tool call from its results is refused (22023).
CREATE FUNCTION memory.fork_conversation(id uuid, at_seq bigint DEFAULT NULL, title text DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN memory._fork_conversation($1, $2, $3);
END $$;

-- The whole rewind, as the owner: pending jobs first (a summary or reply the worker is writing
-- for the removed messages waits for this transaction, then finds its job gone and discards
-- its answer), then the conversation's lock, then the messages and the summaries after to_seq.
CREATE FUNCTION memory._rewind_conversation(p_id uuid, p_to bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_cut  text;
    v_gone integer;
BEGIN
    -- removing messages is the owner's (editors append only)
    PERFORM memory._require(p_id, 'manage');
    DELETE FROM memory.jobs j WHERE j.conversation_id = p_id AND j.status IN ('queued', 'running');
    PERFORM 1 FROM memory.conversations c WHERE c.id = p_id FOR NO KEY UPDATE;
    v_cut := memory._tool_group_cut(p_id, p_to);
    IF v_cut IS NOT NULL THEN
        RAISE EXCEPTION 'cannot rewind to seq %: %', p_to, v_cut
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Rewind to before the tool call, or keep its results: a call is removed with its results.';
    END IF;
    DELETE FROM memory.conversation_messages m WHERE m.conversation_id = p_id AND m.seq > p_to;
    GET DIAGNOSTICS v_gone = ROW_COUNT;
    DELETE FROM memory.conversation_summaries s WHERE s.conversation_id = p_id AND s.covers_through_seq > p_to;
    RETURN v_gone;
END $$;

-- Removes the messages after to_seq ("edit and resend", "regenerate the last reply"), the
-- summaries that covered them and the conversation's pending summary and reply jobs; returns
-- how many messages went. Totals stay exact; seq keeps counting from the highest ever given (the
-- next message after a rewind does not reuse a removed seq). Refuses to separate a tool call
-- from its results (22023).
CREATE FUNCTION memory.rewind_conversation(id uuid, to_seq bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF $1 IS NULL OR $2 IS NULL THEN
        RAISE EXCEPTION 'id and to_seq must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF $2 < 0 THEN
        RAISE EXCEPTION 'to_seq must be 0 or more, got %', $2 USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN memory._rewind_conversation($1, $2);
END $$;

REVOKE EXECUTE ON FUNCTION memory._tool_group_cut(uuid, bigint) FROM PUBLIC;

-- ---- templates -------------------------------------------------------------------------------

-- A reusable start of a conversation: messages (as an import takes them) and an agent. Owned by
-- a user like agents; create_conversation(..., template_id => …) starts a conversation with
-- them, validated like any append. One name per user: saving under a name again replaces it.
CREATE TABLE memory.conversation_templates (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL DEFAULT memory.current_user_id(),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    agent_id   uuid,
    messages   jsonb NOT NULL CHECK (jsonb_typeof(messages) = 'array' AND jsonb_array_length(messages) <= 1000),
    metadata   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT conversation_templates_name_key UNIQUE (user_id, name)
);
ALTER TABLE memory.conversation_templates ENABLE ROW LEVEL SECURITY;
CREATE POLICY templates_owner ON memory.conversation_templates
    USING (user_id = (SELECT memory.current_user_id()))
    WITH CHECK (user_id = (SELECT memory.current_user_id()));
GRANT SELECT, INSERT, UPDATE, DELETE ON memory.conversation_templates TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('memory.conversation_templates', '');

-- Saves the messages of a conversation the caller can read (up to 1000) and its agent as the
-- caller's template `name`; returns the template's id.
CREATE FUNCTION memory.save_as_template(conversation_id uuid, name text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_conv memory.conversations;
    v_id   uuid;
BEGIN
    IF $1 IS NULL OR $2 IS NULL THEN
        RAISE EXCEPTION 'conversation_id and name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF memory.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'no user identity: memory.current_user_id() is NULL' USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT c.* INTO v_conv FROM memory.conversations c WHERE c.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    IF v_conv.message_count > 1000 THEN
        RAISE EXCEPTION 'a template holds at most 1000 messages; conversation % has %', $1, v_conv.message_count
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Fork the conversation at a smaller seq and save the fork.';
    END IF;
    INSERT INTO memory.conversation_templates AS t (name, agent_id, messages)
    SELECT $2, v_conv.agent_id, coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'role', m.role, 'content', m.content, 'name', m.name, 'tool_calls', m.tool_calls,
               'tool_call_id', m.tool_call_id, 'metadata', m.metadata)) ORDER BY m.seq), '[]')
      FROM memory.conversation_messages m WHERE m.conversation_id = $1
    ON CONFLICT ON CONSTRAINT conversation_templates_name_key
    DO UPDATE SET agent_id = excluded.agent_id, messages = excluded.messages, created_at = now()
    RETURNING t.id INTO v_id;
    RETURN v_id;
END $$;

CREATE FUNCTION memory.list_templates() RETURNS SETOF memory.conversation_templates
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.* FROM memory.conversation_templates t ORDER BY t.name, t.id;
$$;

CREATE FUNCTION memory.delete_template(template_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (DELETE FROM memory.conversation_templates t WHERE t.id = $1 RETURNING 1)
    SELECT count(*) > 0 FROM gone;
$$;

-- per-agent retention
ALTER TABLE memory.agents ADD COLUMN retention_days integer CHECK (retention_days >= 0);
DROP FUNCTION memory.create_agent(text, text, text, jsonb, integer, integer, real, integer, boolean, jsonb);
DROP FUNCTION memory.update_agent(uuid, text, text, text, jsonb, integer, integer, real, integer, boolean, jsonb);
CREATE FUNCTION memory.create_agent(
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

CREATE FUNCTION memory.update_agent(
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

-- Full-text search over every conversation the caller can read.
--
-- Each message carries its search_vector (memory._search_vector, set by the insert trigger, the
-- import and the fork). A query is the caller's words (websearch syntax) AND any one of the
-- lexemes naming the caller's readable conversations, so the GIN index intersects the words with
-- the caller's own messages: the cost follows what the caller stored, not what everyone stored.
-- The match runs in memory._search_hits (see there why as the owner, and how it stays within the
-- rule); the page is then joined to conversations under the caller's RLS.

-- The caller's matching messages, ranked, one page (plus one row) after the cursor (p_rank,
-- p_after). SECURITY DEFINER so that the GIN index serves the match: under RLS the planner may not
-- use the (not leakproof) @@ operator as an index condition and would read every message. It
-- trusts no argument for access: the scope is computed here, by the authorization rule, from the
-- caller's identity (a role that bypasses RLS searches everything, as RLS lets it).
CREATE FUNCTION memory._search_hits(p_query tsquery, p_conversation_id uuid, p_agent_id uuid, p_role text,
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
        SELECT string_agg(memory._conversation_lexeme(c.id), ' | ')::tsquery INTO v_scope
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

-- query: web-search syntax ("quoted phrases", or, -word), in memory.search_config (a stopword-only
-- query finds nothing). Filters: conversation_id, agent_id, role, since/until (created_at), tool
-- (a tool name the message calls), has_tool_calls. Results are ranked (ts_rank, normalised by
-- length), equal ranks in message id order; a page is {"results": [...], "next_cursor": text|null};
-- pass next_cursor back as cursor for the next page. Snippets are plain text with the matches between ** and **:
-- escape them before rendering as HTML.
CREATE FUNCTION memory.search_messages(
    query text,
    conversation_id uuid DEFAULT NULL,
    agent_id uuid DEFAULT NULL,
    role text DEFAULT NULL,
    since timestamptz DEFAULT NULL,
    until timestamptz DEFAULT NULL,
    tool text DEFAULT NULL,
    has_tool_calls boolean DEFAULT NULL,
    "limit" integer DEFAULT 20,
    cursor text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_config regconfig := memory._search_config()::regconfig;
    v_query  tsquery;
    v_rank   real;
    v_after  uuid;
    v_result jsonb;
BEGIN
    IF v_config IS NULL THEN
        RAISE EXCEPTION 'search is off on this server (memory.search_config = off)'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'query must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length($1) > 1000 THEN
        RAISE EXCEPTION 'query longer than 1000 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $9 IS NULL OR $9 < 1 OR $9 > 100 THEN
        RAISE EXCEPTION 'limit must be between 1 and 100, got %', coalesce($9::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $4 IS NOT NULL AND $4 NOT IN ('user', 'assistant', 'system', 'tool') THEN
        RAISE EXCEPTION 'unknown role "%"', left($4, 80) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $10 IS NOT NULL THEN
        BEGIN
            v_rank := split_part($10, '/', 1)::real;
            v_after := split_part($10, '/', 2)::uuid;
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            RAISE EXCEPTION 'cursor "%" is not a cursor of search_messages', left($10, 80)
                USING ERRCODE = 'invalid_parameter_value';
        END;
    END IF;
    v_query := websearch_to_tsquery(v_config, $1);
    IF numnode(v_query) = 0 THEN
        RETURN jsonb_build_object('results', '[]'::jsonb, 'next_cursor', NULL);
    END IF;
    WITH page AS (
        SELECT h.* FROM memory._search_hits(v_query, $2, $3, $4, $5, $6, $7, $8, $9, v_rank, v_after) h
    ), numbered AS (
        SELECT p.*, row_number() OVER (ORDER BY p.rank DESC, p.id) AS n FROM page p
    )
    SELECT jsonb_build_object(
               'results', coalesce(jsonb_agg(jsonb_build_object(
                   'conversation_id', x.conversation_id, 'title', c.title, 'agent_id', c.agent_id,
                   'message_id', x.id, 'seq', x.seq, 'role', x.role, 'created_at', x.created_at, 'rank', x.rank,
                   'snippet', ts_headline(v_config,
                                          left(concat_ws(' ', nullif(x.content, ''), (
                                              SELECT string_agg(concat_ws(' ', call->'function'->>'name', call->'function'->>'arguments',
                                                                          call->>'tool', call->>'input', call->>'output'), ' ')
                                                FROM jsonb_array_elements(coalesce(x.tool_calls, '[]')) AS call)), 20000),
                                          v_query, 'StartSel=**, StopSel=**, MaxWords=30, MinWords=10, MaxFragments=2, FragmentDelimiter=" … "'))
                   ORDER BY x.n) FILTER (WHERE x.n <= $9), '[]'::jsonb),
               'next_cursor', (SELECT y.rank::text || '/' || y.id FROM numbered y WHERE y.n = $9 AND EXISTS (SELECT 1 FROM numbered z WHERE z.n > $9)))
      INTO v_result
      FROM numbered x JOIN memory.conversations c ON c.id = x.conversation_id;
    RETURN v_result;
END $$;

-- Recomputes every message's search_vector in the current memory.search_config (after changing
-- it; 'off' empties them), in batches of `batch` messages; returns how many were updated.
-- Superusers only.
CREATE FUNCTION memory.reindex_search(batch integer DEFAULT 10000) RETURNS bigint
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
                      SET search_vector = memory._search_vector(v_config, m.conversation_id, m.content, m.tool_calls)
                     FROM b WHERE m.id = b.id RETURNING m.id)
        SELECT count(*), (array_agg(u.id ORDER BY u.id DESC))[1] INTO v_n, v_last FROM u;
        EXIT WHEN v_n = 0;
        v_done := v_done + v_n;
    END LOOP;
    RETURN v_done;
END $$;
REVOKE EXECUTE ON FUNCTION memory.reindex_search(integer) FROM PUBLIC;

-- Sharing, share links, archiving, retention and erasure. Who may do what is the rule of
-- access.sql: members read (viewers) or also write (editors); sharing, archiving and share links
-- are the owner's.

-- ---- members -----------------------------------------------------------------------------------

-- Makes user_id a member of the conversation as 'viewer' (reads it: messages, build_context,
-- export, search, fork) or 'editor' (also appends messages and requests summaries and replies);
-- sharing again changes the role. The owner's alone. Returns the membership.
CREATE FUNCTION memory._share_conversation(conversation_id uuid, user_id uuid, role text)
RETURNS memory.conversation_members
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_owner uuid;
    v_row   memory.conversation_members;
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
    INSERT INTO memory.conversation_members AS m (conversation_id, user_id, role, owner_id)
    VALUES ($1, $2, $3, v_owner)
    ON CONFLICT ON CONSTRAINT conversation_members_pkey DO UPDATE SET role = excluded.role
    RETURNING m.* INTO v_row;
    RETURN v_row;
END $$;

CREATE FUNCTION memory.share_conversation(conversation_id uuid, user_id uuid, role text DEFAULT 'viewer') RETURNS memory.conversation_members
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._share_conversation($1, $2, $3);
$$;

-- Removes user_id from the conversation's members: the owner removes anyone, a member itself.
-- The removed member's next statement no longer sees the conversation. Returns whether there was
-- such a membership.
CREATE FUNCTION memory._unshare_conversation(conversation_id uuid, user_id uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_gone integer;
BEGIN
    IF $1 IS NULL OR $2 IS NULL THEN
        RAISE EXCEPTION 'conversation_id and user_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- a member may leave; removing anyone else is the owner's
    IF $2 IS DISTINCT FROM memory.current_user_id() THEN
        PERFORM memory._require($1, 'manage');
    END IF;
    DELETE FROM memory.conversation_members m WHERE m.conversation_id = $1 AND m.user_id = $2;
    GET DIAGNOSTICS v_gone = ROW_COUNT;
    RETURN v_gone > 0;
END $$;

CREATE FUNCTION memory.unshare_conversation(conversation_id uuid, user_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._unshare_conversation($1, $2);
$$;

-- Who may use the conversation: its owner (role 'owner') and its members, for anyone who may read
-- it.
CREATE FUNCTION memory._list_members(conversation_id uuid)
RETURNS TABLE (user_id uuid, role text, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._require($1, 'read');
    RETURN QUERY
        SELECT c.user_id, 'owner'::text, c.created_at FROM memory.conversations c WHERE c.id = $1
        UNION ALL
        (SELECT m.user_id, m.role, m.created_at FROM memory.conversation_members m
          WHERE m.conversation_id = $1 ORDER BY m.created_at, m.user_id);
END $$;

CREATE FUNCTION memory.list_members(conversation_id uuid) RETURNS TABLE (user_id uuid, role text, created_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._list_members($1);
$$;

-- ---- transfer of ownership ---------------------------------------------------------------------

-- Makes user_id the conversation's owner. The owner's alone. The previous owner stays as an
-- editor (it may leave with unshare_conversation); if the new owner was a member, that
-- membership ends; the other members and the share links stay (the new owner manages them). The
-- conversation keeps its agent_id, but an agent applies only to its own owner's conversations:
-- until the new owner sets an agent of its own, the defaults apply. Jobs queued before the
-- transfer run as they were requested.
CREATE FUNCTION memory._transfer_conversation(conversation_id uuid, user_id uuid) RETURNS memory.conversations
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_owner uuid;
    v_row   memory.conversations;
BEGIN
    IF $1 IS NULL OR $2 IS NULL THEN
        RAISE EXCEPTION 'conversation_id and user_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM memory._require($1, 'manage');
    SELECT c.user_id INTO v_owner FROM memory.conversations c WHERE c.id = $1 FOR NO KEY UPDATE;
    IF $2 = v_owner OR $2 = '00000000-0000-0000-0000-000000000000' THEN
        RAISE EXCEPTION 'cannot transfer conversation % to user %', $1, $2
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE WHEN $2 = v_owner THEN 'That user already owns it.' ELSE 'The nil uuid is no user.' END;
    END IF;
    DELETE FROM memory.conversation_members m WHERE m.conversation_id = $1 AND m.user_id = $2;
    UPDATE memory.conversation_members m SET owner_id = $2 WHERE m.conversation_id = $1;
    INSERT INTO memory.conversation_members (conversation_id, user_id, role, owner_id) VALUES ($1, v_owner, 'editor', $2);
    UPDATE memory.conversations c SET user_id = $2 WHERE c.id = $1 RETURNING c.* INTO v_row;
    RETURN v_row;
END $$;

CREATE FUNCTION memory.transfer_conversation(conversation_id uuid, user_id uuid) RETURNS memory.conversations
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._transfer_conversation($1, $2);
$$;

-- ---- archive -----------------------------------------------------------------------------------

-- An archived conversation stays readable (and exportable, searchable) but is hidden from
-- list_conversations by default and refuses new messages (SQLSTATE 55000). The owner's.
CREATE FUNCTION memory.archive_conversation(id uuid) RETURNS memory.conversations
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.conversations;
BEGIN
    PERFORM memory._require($1, 'manage');
    UPDATE memory.conversations c SET archived_at = coalesce(c.archived_at, now()) WHERE c.id = $1 RETURNING c.* INTO v_row;
    RETURN v_row;
END $$;

CREATE FUNCTION memory.unarchive_conversation(id uuid) RETURNS memory.conversations
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.conversations;
BEGIN
    PERFORM memory._require($1, 'manage');
    UPDATE memory.conversations c SET archived_at = NULL WHERE c.id = $1 RETURNING c.* INTO v_row;
    RETURN v_row;
END $$;

-- ---- share links -------------------------------------------------------------------------------

-- A read-only view of a conversation for whoever holds the token, up to a fixed message. Only the
-- token's SHA-256 is stored: the token itself is shown once, by create_share_link.
CREATE TABLE memory.share_links (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL REFERENCES memory.conversations (id) ON DELETE CASCADE,
    token_hash      bytea NOT NULL UNIQUE,
    up_to_seq       bigint NOT NULL CHECK (up_to_seq >= 0),
    expires_at      timestamptz,
    revoked_at      timestamptz,
    created_by      uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX share_links_conversation_idx ON memory.share_links (conversation_id, created_at);
ALTER TABLE memory.share_links ENABLE ROW LEVEL SECURITY;
-- the owner sees its conversations' links (never a token); written only through the functions
CREATE POLICY share_links_owner ON memory.share_links FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_manage_row(c.user_id, (SELECT memory.current_user_id()))));
GRANT SELECT ON memory.share_links TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('memory.share_links', '');

-- Returns a new token (about 244 random bits, from two version-4 UUIDs) for the conversation's
-- messages up to up_to_seq (default: all it has now), valid until expires_at (default: until
-- revoked). The owner's; at most 100 links per conversation.
CREATE FUNCTION memory._create_share_link(conversation_id uuid, expires_at timestamptz, up_to_seq bigint)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_last  bigint;
    v_upto  bigint;
    v_token text := 'mxs_' || encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'hex');
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM memory._require($1, 'manage');
    SELECT c.last_seq INTO v_last FROM memory.conversations c WHERE c.id = $1 FOR NO KEY UPDATE;
    v_upto := coalesce($3, v_last);
    IF v_upto < 0 OR v_upto > v_last THEN
        RAISE EXCEPTION 'up_to_seq % is outside the conversation (0..%)', v_upto, v_last USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $2 IS NOT NULL AND $2 <= now() THEN
        RAISE EXCEPTION 'expires_at is not in the future' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT count(*) FROM memory.share_links l WHERE l.conversation_id = $1) >= 100 THEN
        RAISE EXCEPTION 'conversation % already has 100 share links', $1
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Revoke some, or delete revoked ones with memory.revoke_share_link.';
    END IF;
    INSERT INTO memory.share_links (conversation_id, token_hash, up_to_seq, expires_at, created_by)
    VALUES ($1, sha256(convert_to(v_token, 'UTF8')), v_upto, $2, coalesce(memory.current_user_id(), '00000000-0000-0000-0000-000000000000'));
    RETURN v_token;
END $$;

CREATE FUNCTION memory.create_share_link(conversation_id uuid, expires_at timestamptz DEFAULT NULL, up_to_seq bigint DEFAULT NULL) RETURNS text
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._create_share_link($1, $2, $3);
$$;

-- The conversation behind a token, as export_conversation's json up to the link's message, for
-- anyone holding the token (the anon role included). A wrong, expired or revoked token gives the
-- same error after the same work: one look-up of the token's hash.
CREATE FUNCTION memory._get_shared_conversation(token text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_link memory.share_links;
    v_conv memory.conversations;
BEGIN
    SELECT l.* INTO v_link FROM memory.share_links l
     WHERE l.token_hash = sha256(convert_to(left(coalesce($1, ''), 200), 'UTF8'))
       AND l.revoked_at IS NULL AND (l.expires_at IS NULL OR l.expires_at > now());
    IF NOT FOUND THEN
        RAISE EXCEPTION 'share link is not valid' USING ERRCODE = 'no_data_found';
    END IF;
    SELECT c.* INTO v_conv FROM memory.conversations c WHERE c.id = v_link.conversation_id;
    RETURN memory._export_json(v_conv, v_link.up_to_seq);
END $$;

CREATE FUNCTION memory.get_shared_conversation(token text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._get_shared_conversation($1);
$$;

-- The conversation's links (no tokens: they are not stored), newest first. The owner's.
CREATE FUNCTION memory.list_share_links(conversation_id uuid)
RETURNS TABLE (id uuid, up_to_seq bigint, expires_at timestamptz, revoked_at timestamptz, created_at timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._require($1, 'manage');
    RETURN QUERY SELECT l.id, l.up_to_seq, l.expires_at, l.revoked_at, l.created_at
                   FROM memory.share_links l WHERE l.conversation_id = $1
                  ORDER BY l.created_at DESC, l.id;
END $$;

-- Revokes a link at once (its token stops working for the next statement). Revoking a revoked
-- link deletes it. Returns false when there is no such link of a conversation the caller owns.
CREATE FUNCTION memory._revoke_share_link(id uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_link memory.share_links;
BEGIN
    SELECT l.* INTO v_link FROM memory.share_links l WHERE l.id = $1;
    IF NOT FOUND OR NOT memory.can_manage(v_link.conversation_id) THEN
        RETURN false;
    END IF;
    IF v_link.revoked_at IS NULL THEN
        UPDATE memory.share_links l SET revoked_at = now() WHERE l.id = $1;
    ELSE
        DELETE FROM memory.share_links l WHERE l.id = $1;
    END IF;
    RETURN true;
END $$;

CREATE FUNCTION memory.revoke_share_link(id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._revoke_share_link($1);
$$;

-- ---- retention ---------------------------------------------------------------------------------

-- The conversations past their retention period: not updated for their agent's retention_days
-- when their agent sets one (0: kept forever), otherwise for `days` (the server's
-- memory.retention_days; 0: kept). Invoker: RLS applies to whoever calls it.
CREATE FUNCTION memory._retention_due(days integer)
RETURNS TABLE (conversation_id uuid, user_id uuid, title text, updated_at timestamptz, message_count integer,
               retention_days integer)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.id, c.user_id, c.title, c.updated_at, c.message_count, d.days
      FROM memory.conversations c
      -- an agent applies to its owner's conversations only (see agents.sql)
      LEFT JOIN memory.agents a ON a.id = c.agent_id AND a.user_id = c.user_id
     CROSS JOIN LATERAL (SELECT coalesce(a.retention_days, $1) AS days) d
     WHERE d.days > 0 AND c.updated_at < now() - make_interval(days => d.days);
$$;

-- What the worker's retention jobs will delete, oldest first, with the retention period that
-- applies to each; `days` stands in for memory.retention_days (default: the setting; agents'
-- own values apply either way). RLS applies: a user sees its own, an operator all.
CREATE FUNCTION memory.retention_preview(days integer DEFAULT NULL)
RETURNS TABLE (conversation_id uuid, user_id uuid, title text, updated_at timestamptz, message_count integer,
               retention_days integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF $1 < 1 THEN
        RAISE EXCEPTION 'days must be at least 1, not %', $1 USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT d.* FROM memory._retention_due(
                     coalesce($1, nullif(current_setting('memory.retention_days', true), '')::integer, 0)) d
                  ORDER BY d.updated_at, d.conversation_id;
END $$;

-- Queues the server's retention job (the worker asks every memory.retention_interval seconds)
-- unless one is pending or retention is off everywhere (memory.retention_days = 0 and no agent
-- sets retention_days).
CREATE FUNCTION memory._enqueue_retention() RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO memory.jobs (kind, user_id)
    SELECT 'retention', '00000000-0000-0000-0000-000000000000'
     WHERE NOT EXISTS (SELECT 1 FROM memory.jobs j WHERE j.kind = 'retention' AND j.status IN ('queued', 'running'))
       AND (coalesce(nullif(current_setting('memory.retention_days', true), '')::integer, 0) > 0
            OR EXISTS (SELECT 1 FROM memory.agents a WHERE a.retention_days > 0));
$$;

-- One retention batch, in the worker's transaction: deletes at most `batch` conversations past
-- their retention period (`days`: memory.retention_days), oldest first (those being written are
-- skipped, not waited for), with everything they hold. Returns how many conversations and
-- messages went.
CREATE FUNCTION memory._retention_batch(days integer, batch integer, OUT conversations bigint, OUT messages bigint)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH due AS (SELECT c.id FROM memory.conversations c
                  WHERE c.id IN (SELECT d.conversation_id FROM memory._retention_due($1) d)
                  ORDER BY c.updated_at, c.id
                  LIMIT $2
                    FOR UPDATE SKIP LOCKED),
         gone AS (DELETE FROM memory.conversations c USING due WHERE c.id = due.id RETURNING c.message_count)
    SELECT count(*), coalesce(sum(gone.message_count), 0) FROM gone;
$$;
REVOKE EXECUTE ON FUNCTION memory._enqueue_retention(), memory._retention_batch(integer, integer) FROM PUBLIC;

-- ---- erasure -----------------------------------------------------------------------------------

-- Removes everything of one user, in one transaction: its conversations (with their messages,
-- summaries, jobs, members and share links), its memberships in others' conversations, its
-- agents, templates, LLM call records, usage counters and queue state. For superusers and roles
-- that bypass RLS (Supabase's service_role) only. Returns the rows removed per table.
CREATE FUNCTION memory._erase_user(user_id uuid) RETURNS jsonb
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
    -- what the conversations' cascade takes, counted first
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

    DELETE FROM memory.conversation_members m WHERE m.user_id = $1;
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

CREATE FUNCTION memory.erase_user(user_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._erase_user($1);
$$;

-- Usage analytics for dashboards. Views with security_invoker: the caller's row-level security
-- applies to every table they read, so a user sees the figures of what it may read (its own
-- conversations and those shared with it, its own LLM calls), a caller without identity sees
-- nothing, and a superuser or BYPASSRLS role (an operator's dashboard) sees everyone's.
-- They aggregate on read: a user's figures cost what that user stored (its conversations are
-- found through the index on their owner, their messages through (conversation_id, seq)).

-- Per day (UTC), user (the conversation's owner), agent and model: stored messages, their tokens
-- and tool calls (rows with model NULL: messages carry no model), and LLM calls with the tokens
-- the provider reported (rows with the call's model).
CREATE VIEW memory.usage_daily WITH (security_invoker = true) AS
SELECT u.day, u.user_id, u.agent_id, u.model,
       sum(u.messages)::bigint AS messages,
       sum(u.stored_tokens)::bigint AS stored_tokens,
       sum(u.tool_calls)::bigint AS tool_calls,
       sum(u.llm_calls)::bigint AS llm_calls,
       sum(u.prompt_tokens)::bigint AS prompt_tokens,
       sum(u.completion_tokens)::bigint AS completion_tokens
  FROM (SELECT (m.created_at AT TIME ZONE 'UTC')::date AS day, c.user_id, c.agent_id, NULL::text AS model,
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

-- Per tool name: calls made (OpenAI calls and combined call+result records), results (a tool
-- message answering the call, or the record's own output), calls still without a result, and the
-- last time the tool was called.
CREATE VIEW memory.tool_usage WITH (security_invoker = true) AS
SELECT t.tool,
       count(*) AS calls,
       count(*) FILTER (WHERE t.answered) AS results,
       count(*) FILTER (WHERE NOT t.answered) AS without_result,
       max(t.called_at) AS last_used
  FROM (SELECT coalesce(call->'function'->>'name', call->>'tool') AS tool, m.created_at AS called_at,
               (call ? 'output' OR EXISTS (SELECT 1 FROM memory.conversation_messages r
                                            WHERE r.conversation_id = m.conversation_id AND r.tool_call_id = call->>'id')) AS answered
          FROM memory.conversation_messages m, jsonb_array_elements(m.tool_calls) AS call
         WHERE m.tool_calls IS NOT NULL) t
 GROUP BY t.tool;

-- Per conversation and day (UTC): messages and tokens stored that day and the last message's
-- time. The most active conversations of a period:
--   SELECT conversation_id, title, sum(messages) ... WHERE day >= ... GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10
CREATE VIEW memory.conversation_activity WITH (security_invoker = true) AS
SELECT m.conversation_id, c.title, c.user_id, c.agent_id,
       (m.created_at AT TIME ZONE 'UTC')::date AS day,
       count(*) AS messages,
       sum(m.token_count)::bigint AS tokens,
       max(m.created_at) AS last_activity
  FROM memory.conversation_messages m JOIN memory.conversations c ON c.id = m.conversation_id
 GROUP BY m.conversation_id, c.title, c.user_id, c.agent_id, (m.created_at AT TIME ZONE 'UTC')::date;

-- Per agent (and the user whose calls they were) from the LLM calls of chat turns, reply jobs and
-- summaries: calls, failures, latency p50/p95 in ms, and completion tokens per answered turn.
CREATE VIEW memory.agent_performance WITH (security_invoker = true) AS
SELECT l.agent_id, l.user_id,
       count(*) AS llm_calls,
       count(*) FILTER (WHERE l.status = 'error') AS failures,
       count(*) FILTER (WHERE l.status = 'discarded') AS discarded,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY l.latency_ms) AS latency_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY l.latency_ms) AS latency_p95_ms,
       avg(l.completion_tokens) FILTER (WHERE l.status = 'ok' AND l.kind IN ('chat', 'reply')) AS tokens_per_reply,
       max(l.created_at) AS last_call
  FROM memory.llm_calls l
 GROUP BY l.agent_id, l.user_id;

GRANT SELECT ON memory.usage_daily, memory.tool_usage, memory.conversation_activity, memory.agent_performance TO PUBLIC;
