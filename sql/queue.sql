-- The job queue (memory.jobs): queueing a job for whoever caused it, keeping each user's count of
-- queued jobs, and the worker's side — the fair claim, finishing, retrying with its limit
-- (memory.max_attempts, read here only), queueing again, and recovering after a crash. The
-- table is in tables.sql.

-- Keeps queue_turns.queued, the number of each user's queued jobs. SECURITY DEFINER: jobs also
-- go with a conversation a user deletes (the cascade), and users may not write queue_turns.
CREATE OR REPLACE FUNCTION memory._jobs_count_queued() RETURNS trigger
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

-- ---- the worker's side ---------------------------------------------------------------------------
-- Called by the background worker only (as the superuser; not executable by PUBLIC). The retry
-- limit is memory.max_attempts, read here and nowhere else.

-- Whether a job that failed or was interrupted `p_count` times has used up its attempts.
CREATE OR REPLACE FUNCTION memory._attempts_exhausted(p_count integer) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_count >= current_setting('memory.max_attempts')::integer;
$$;

-- Marks the next due job running, taking it from the waiting user whose jobs were served longest
-- ago (fair between users; one index probe per waiting user, whatever the queue's length), except
-- users in p_saturated (their jobs hold their share of the calls in flight), and records that
-- user's turn. Returns the job with what the worker needs of its conversation (no row: nothing
-- is due). A job whose conversation is gone is failed, never left running.
CREATE OR REPLACE FUNCTION memory._claim_job(p_saturated uuid[])
RETURNS TABLE (id bigint, kind text, conversation_id uuid, attempts integer, user_id uuid, encoding text,
               total_tokens bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_job memory.jobs;
BEGIN
    UPDATE memory.jobs j
       SET status = 'running', updated_at = now()
     WHERE j.id = (SELECT n.id FROM memory.queue_turns t
                    CROSS JOIN LATERAL (SELECT q.id FROM memory.jobs q
                                         WHERE q.user_id = t.user_id AND q.status = 'queued'
                                           AND q.run_after <= now()
                                         ORDER BY q.run_after, q.id LIMIT 1) n
                    WHERE t.queued > 0 AND t.user_id <> ALL (p_saturated)
                    ORDER BY t.last_claimed_at NULLS FIRST
                    LIMIT 1)
       AND j.status = 'queued'
    RETURNING j.* INTO v_job;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO memory.queue_turns AS t (user_id, last_claimed_at) VALUES (v_job.user_id, clock_timestamp())
    ON CONFLICT ON CONSTRAINT queue_turns_pkey DO UPDATE SET last_claimed_at = excluded.last_claimed_at;
    id := v_job.id; kind := v_job.kind; conversation_id := v_job.conversation_id;
    attempts := v_job.attempts; user_id := v_job.user_id;
    IF v_job.kind <> 'retention' THEN
        SELECT c.encoding, c.total_tokens INTO encoding, total_tokens
          FROM memory.conversations c WHERE c.id = v_job.conversation_id;
        IF NOT FOUND THEN
            PERFORM memory._finish_job(v_job.id, 'failed', 'the conversation of this job could not be read');
            RETURN;
        END IF;
    END IF;
    RETURN NEXT;
END $$;

-- Ends a job: 'done' (p_error: why nothing was needed, or NULL) or 'failed' (p_error: why), with
-- p_payload merged into its payload (a reply's message id).
CREATE OR REPLACE FUNCTION memory._finish_job(p_id bigint, p_status text, p_error text DEFAULT NULL,
                                              p_payload jsonb DEFAULT '{}') RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE memory.jobs
       SET status = p_status, last_error = p_error, payload = payload || p_payload, updated_at = now()
     WHERE id = p_id;
$$;

-- A failed attempt: counted, and the job runs again after p_wait_seconds, or is failed once its
-- attempts are used up.
CREATE OR REPLACE FUNCTION memory._retry_job(p_id bigint, p_error text, p_wait_seconds double precision) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE memory.jobs
       SET attempts = attempts + 1,
           status = CASE WHEN memory._attempts_exhausted(attempts + 1) THEN 'failed' ELSE 'queued' END,
           last_error = p_error,
           run_after = now() + make_interval(secs => p_wait_seconds),
           updated_at = now()
     WHERE id = p_id;
$$;

-- Queues running jobs again without spending an attempt (no LLM call was made, or its answer
-- was stale, or the worker stops), due after p_delay.
CREATE OR REPLACE FUNCTION memory._requeue_jobs(p_ids bigint[], p_error text, p_delay interval DEFAULT '0')
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE memory.jobs
       SET status = 'queued', run_after = now() + p_delay, last_error = p_error, updated_at = now()
     WHERE id = ANY (p_ids) AND status = 'running';
$$;

-- Jobs left running belonged to a worker that died: queued again without spending an attempt,
-- but counted as interruptions (a job interrupted memory.max_attempts times is failed: it may be
-- what kills the worker).
CREATE OR REPLACE FUNCTION memory._recover_jobs() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE memory.jobs
       SET status = CASE WHEN memory._attempts_exhausted(coalesce((payload->>'interruptions')::int, 0) + 1)
                         THEN 'failed' ELSE 'queued' END,
           payload = payload || jsonb_build_object('interruptions', coalesce((payload->>'interruptions')::int, 0) + 1),
           last_error = 'interrupted: the worker stopped during this job (not counted as an attempt)',
           updated_at = now()
     WHERE status = 'running';
$$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._enqueue_job(text, uuid),
    memory._jobs_count_queued(),
    memory._attempts_exhausted(integer),
    memory._claim_job(uuid[]),
    memory._finish_job(bigint, text, text, jsonb),
    memory._retry_job(bigint, text, double precision),
    memory._requeue_jobs(bigint[], text, interval),
    memory._recover_jobs()
FROM PUBLIC;
