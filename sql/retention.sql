-- Retention: conversations not updated for their period (the operator's memory.retention_days, or
-- an agent's shorter retention_days) are deleted by the worker's retention jobs, in batches.

-- ---- retention ---------------------------------------------------------------------------------

-- The conversations past their retention period: not updated for their agent's retention_days
-- when their agent sets one (0: kept forever), otherwise for `days` (the server's
-- memory.retention_days; 0: kept). Invoker: RLS applies to whoever calls it. PL/pgSQL: Citus
-- cannot plan a parameterised SQL function's query over distributed conversations.
CREATE OR REPLACE FUNCTION memory._retention_due(days integer)
RETURNS TABLE (conversation_id uuid, user_id uuid, title text, updated_at timestamptz, message_count integer,
               retention_days integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY
    SELECT c.id, c.user_id, c.title, c.updated_at, c.message_count, d.days
      FROM memory.conversations c
      LEFT JOIN memory.agents a ON memory._agent_applies(a, c.agent_id, c.user_id)
     -- the operator's period is a ceiling: an agent may only shorten it (0 or NULL: the operator's);
     -- with no operator period, the agent's own applies
     CROSS JOIN LATERAL (SELECT coalesce(least(nullif(a.retention_days, 0), nullif(_retention_due.days, 0)), 0) AS days) d
     WHERE d.days > 0 AND c.updated_at < now() - make_interval(days => d.days);
END $$;

-- What the worker's retention jobs will delete, oldest first, with the retention period that
-- applies to each; `days` stands in for memory.retention_days (default: the setting; agents'
-- own values apply either way). RLS applies: a user sees its own, an operator all.
CREATE OR REPLACE FUNCTION memory.retention_preview(days integer DEFAULT NULL)
RETURNS TABLE (conversation_id uuid, user_id uuid, title text, updated_at timestamptz, message_count integer,
               retention_days integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF retention_preview.days < 1 THEN
        RAISE EXCEPTION 'days must be at least 1, not %', retention_preview.days USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT d.* FROM memory._retention_due(
                     coalesce(retention_preview.days, nullif(current_setting('memory.retention_days', true), '')::integer, 0)) d
                  ORDER BY d.updated_at, d.conversation_id;
END $$;

-- Queues the server's retention job (the worker asks every memory.retention_interval seconds)
-- unless one is pending or retention is off everywhere (memory.retention_days = 0 and no agent
-- sets retention_days).
CREATE OR REPLACE FUNCTION memory._enqueue_retention() RETURNS void
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
CREATE OR REPLACE FUNCTION memory._retention_batch(days integer, batch integer, OUT conversations bigint, OUT messages bigint)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH due AS (SELECT c.id FROM memory.conversations c
                  WHERE c.id IN (SELECT d.conversation_id FROM memory._retention_due($1) d)
                  ORDER BY c.updated_at, c.id
                  LIMIT $2
                    FOR UPDATE SKIP LOCKED),
         gone AS (DELETE FROM memory.conversations c USING due WHERE c.id = due.id RETURNING c.message_count)
    SELECT count(*), coalesce(sum(gone.message_count), 0) FROM gone;
$$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._enqueue_retention(),
    memory._retention_batch(integer, integer)
FROM PUBLIC;
