-- Summaries and their queue (SPEC §4.5). Users read summaries under RLS; the queue is reached
-- only through these functions. A SECURITY DEFINER helper may touch the queue only for a
-- conversation the caller has proved it can see: its id together with its created_at
-- (microseconds), which RLS shows to nobody else.

CREATE FUNCTION memory._summary_before_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_encoding text;
BEGIN
    SELECT c.encoding INTO v_encoding FROM memory.conversations c WHERE c.id = NEW.conversation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', NEW.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    -- what build_context will emit for it, counted once here
    NEW.token_count := memory.message_tokens('system', 'Summary of the earlier conversation: ' || NEW.content, NULL, NULL, v_encoding);
    NEW.covered_tokens := coalesce((SELECT sum(m.token_count) FROM memory.conversation_messages m
                                     WHERE m.conversation_id = NEW.conversation_id AND m.seq <= NEW.covers_through_seq), 0);
    RETURN NEW;
END $$;

CREATE TRIGGER summaries_before_insert BEFORE INSERT ON memory.conversation_summaries
    FOR EACH ROW EXECUTE FUNCTION memory._summary_before_insert();

-- Tokens of a conversation not covered by its newest summary: two index probes.
CREATE FUNCTION memory._uncovered_tokens(p_conversation_id uuid, p_total_tokens bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT p_total_tokens - coalesce((SELECT s.covered_tokens FROM memory.conversation_summaries s
                                       WHERE s.conversation_id = p_conversation_id
                                       ORDER BY s.covers_through_seq DESC LIMIT 1), 0);
$$;

-- Raises P0002 unless (id, created_at) names a conversation: the proof a SECURITY DEFINER helper
-- asks of its caller before acting on a conversation.
CREATE FUNCTION memory._check_visibility_proof(p_conversation_id uuid, p_created_at timestamptz) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM memory.conversations c WHERE c.id = p_conversation_id AND c.created_at = p_created_at) THEN
        RAISE EXCEPTION 'conversation % does not exist', p_conversation_id USING ERRCODE = 'no_data_found';
    END IF;
END $$;

CREATE FUNCTION memory._enqueue_summary(p_conversation_id uuid, p_created_at timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_job bigint;
BEGIN
    PERFORM memory._check_visibility_proof(p_conversation_id, p_created_at);
    SELECT j.id INTO v_job FROM memory.summary_jobs j
     WHERE j.conversation_id = p_conversation_id AND j.status IN ('queued', 'running');
    IF FOUND THEN
        RETURN v_job;
    END IF;
    INSERT INTO memory.summary_jobs (conversation_id) VALUES (p_conversation_id)
    ON CONFLICT (conversation_id) WHERE status IN ('queued', 'running') DO NOTHING
    RETURNING id INTO v_job;
    IF v_job IS NULL THEN  -- a concurrent request won the race
        SELECT j.id INTO v_job FROM memory.summary_jobs j
         WHERE j.conversation_id = p_conversation_id AND j.status IN ('queued', 'running');
    END IF;
    PERFORM pg_notify('memory_summary_jobs', v_job::text);
    RETURN v_job;
END $$;

CREATE FUNCTION memory._job_status(p_conversation_id uuid, p_created_at timestamptz) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT (SELECT jsonb_build_object('id', j.id, 'status', j.status, 'attempts', j.attempts,
                                      'last_error', j.last_error, 'run_after', j.run_after,
                                      'created_at', j.created_at, 'updated_at', j.updated_at)
              FROM memory.summary_jobs j
             WHERE j.conversation_id = c.id
             ORDER BY j.id DESC LIMIT 1)
      FROM memory.conversations c
     WHERE c.id = p_conversation_id AND c.created_at = p_created_at;
$$;
REVOKE ALL ON FUNCTION memory._job_status(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._job_status(uuid, timestamptz) TO PUBLIC;

CREATE FUNCTION memory.should_summarize(conversation_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_total bigint;
BEGIN
    SELECT c.total_tokens INTO v_total FROM memory.conversations c WHERE c.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    RETURN memory._uncovered_tokens($1, v_total) > current_setting('memory.summarize_threshold')::bigint;
END $$;

CREATE FUNCTION memory.request_summary(conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_created timestamptz;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.created_at INTO v_created FROM memory.conversations c WHERE c.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    RETURN memory._enqueue_summary($1, v_created);
END $$;

CREATE FUNCTION memory.summary_status(conversation_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_conv memory.conversations;
    v_summary jsonb;
    v_uncovered bigint;
BEGIN
    SELECT c.* INTO v_conv FROM memory.conversations c WHERE c.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    SELECT jsonb_build_object('id', s.id, 'covers_through_seq', s.covers_through_seq, 'content', s.content,
                              'token_count', s.token_count, 'model', s.model, 'created_at', s.created_at)
      INTO v_summary
      FROM memory.conversation_summaries s
     WHERE s.conversation_id = $1
     ORDER BY s.covers_through_seq DESC, s.id DESC LIMIT 1;
    v_uncovered := memory._uncovered_tokens(v_conv.id, v_conv.total_tokens);
    RETURN jsonb_build_object(
        'conversation_id', v_conv.id,
        'total_tokens', v_conv.total_tokens,
        'uncovered_tokens', v_uncovered,
        'threshold', current_setting('memory.summarize_threshold')::bigint,
        'should_summarize', v_uncovered > current_setting('memory.summarize_threshold')::bigint,
        'summary', v_summary,
        'job', memory._job_status(v_conv.id, v_conv.created_at));
END $$;
