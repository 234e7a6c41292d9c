-- Summaries: the newest one, validating an inserted one, what is left to summarize, and
-- requesting one. Users read and write summaries under RLS; the queue is reached only through
-- these functions, whose SECURITY DEFINER helpers check the authorization rule (access.sql)
-- themselves.

-- "The newest summary" of a conversation, one definition for build_context, the worker and
-- summary_status: the highest covers_through_seq, then the highest id.
CREATE OR REPLACE FUNCTION memory._newest_summary(p_conversation_id uuid) RETURNS memory.conversation_summaries
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
    NEW.token_count := memory.summary_tokens(NEW.content, v_encoding);
    NEW.covered_tokens := coalesce((SELECT sum(m.token_count) FROM memory.conversation_messages m
                                     WHERE m.conversation_id = NEW.conversation_id AND m.seq <= NEW.covers_through_seq), 0);
    NEW.created_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER summaries_before_insert BEFORE INSERT ON memory.conversation_summaries
    FOR EACH ROW EXECUTE FUNCTION memory._summary_before_insert();

-- Tokens of a conversation not covered by its newest summary: two index probes.
CREATE OR REPLACE FUNCTION memory._uncovered_tokens(p_conversation_id uuid, p_total_tokens bigint) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_total_tokens - coalesce((memory._newest_summary(p_conversation_id)).covered_tokens, 0);
$$;

-- request_summary's way into the queue: checks that the caller may write the conversation.
CREATE OR REPLACE FUNCTION memory._request_summary(p_conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._require(p_conversation_id, 'write');
    -- a summary is an LLM call charged to the requester: refused while over the daily token limit
    PERFORM memory._raise_error(memory._caller_token_quota_error());
    RETURN memory._enqueue_job('summary', p_conversation_id);
END $$;

-- The newest summary job of a conversation the caller may read, or NULL.
CREATE OR REPLACE FUNCTION memory._summary_job_status(p_conversation_id uuid) RETURNS jsonb
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
    SELECT c.total_tokens INTO v_total FROM memory.conversations c WHERE c.id = should_summarize.conversation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', should_summarize.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN memory._uncovered_tokens(should_summarize.conversation_id, v_total) > memory._summarize_threshold();
END $$;

CREATE OR REPLACE FUNCTION memory.request_summary(conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF request_summary.conversation_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN memory._request_summary(request_summary.conversation_id);
END $$;

CREATE OR REPLACE FUNCTION memory.summary_status(conversation_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_conv memory.conversations;
    v_summary memory.conversation_summaries;
    v_uncovered bigint;
    v_threshold bigint := memory._summarize_threshold();
BEGIN
    SELECT c.* INTO v_conv FROM memory.conversations c WHERE c.id = summary_status.conversation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', summary_status.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    v_summary := memory._newest_summary(summary_status.conversation_id);
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

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._request_summary(uuid),
    memory._summary_before_insert()
FROM PUBLIC;
