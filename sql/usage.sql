-- LLM usage and per-user limits: the day's token and cost counters that follow memory.llm_calls,
-- the messages-per-minute counter, and the checks that raise PT429 (see docs/errors.md).

-- Keeps the day's counters of the user a call belongs to: a call is charged when its row is
-- written (the prompt as counted locally, while the provider has not reported), and charged the
-- difference when the worker completes the row with the provider's figures. Its cost
-- (memory._llm_call_price, before the write) follows the same way.
CREATE OR REPLACE FUNCTION memory._llm_call_after_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_today date := (now() AT TIME ZONE 'UTC')::date;
    v_tokens bigint := coalesce(NEW.total_tokens, NEW.local_prompt_tokens, 0);
    v_cost numeric := coalesce(NEW.cost_usd, 0);
BEGIN
    IF TG_OP = 'UPDATE' THEN
        v_tokens := v_tokens - coalesce(OLD.total_tokens, OLD.local_prompt_tokens, 0);
        v_cost := v_cost - coalesce(OLD.cost_usd, 0);
        IF v_tokens = 0 AND v_cost = 0 THEN
            RETURN NULL;
        END IF;
    END IF;
    INSERT INTO memory.user_usage AS u (user_id, minute_start, minute_messages, day_start, day_tokens, day_cost_usd)
    VALUES (NEW.user_id, '-infinity', 0, v_today, v_tokens, v_cost)
    ON CONFLICT (user_id) DO UPDATE
       SET day_tokens = greatest(0, CASE WHEN u.day_start = excluded.day_start THEN u.day_tokens + excluded.day_tokens
                                         ELSE excluded.day_tokens END),
           day_cost_usd = greatest(0, CASE WHEN u.day_start = excluded.day_start THEN u.day_cost_usd + excluded.day_cost_usd
                                           ELSE excluded.day_cost_usd END),
           day_start = excluded.day_start;
    RETURN NULL;
END $$;

CREATE TRIGGER llm_calls_after_write
    AFTER INSERT OR UPDATE OF total_tokens, local_prompt_tokens, prompt_tokens, completion_tokens, model ON memory.llm_calls
    FOR EACH ROW EXECUTE FUNCTION memory._llm_call_after_write();

-- Adds one call's figures (sign 1) to its day's row of memory.llm_call_days, or takes them away
-- (sign -1; a row left with no calls is removed).
CREATE OR REPLACE FUNCTION memory._add_llm_call_day(p_call memory.llm_calls, p_sign integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_day date := (p_call.created_at AT TIME ZONE 'UTC')::date;
    v_calls bigint;
BEGIN
    INSERT INTO memory.llm_call_days AS d (user_id, day, agent_id, model, conversation_id, calls, prompt_tokens,
                                           completion_tokens, priced_calls, cost_usd)
    VALUES (p_call.user_id, v_day, p_call.agent_id, p_call.model, p_call.conversation_id, p_sign,
            p_sign * coalesce(p_call.prompt_tokens, 0), p_sign * coalesce(p_call.completion_tokens, 0),
            CASE WHEN p_call.cost_usd IS NULL THEN 0 ELSE p_sign END, p_sign * coalesce(p_call.cost_usd, 0))
    ON CONFLICT ON CONSTRAINT llm_call_days_key DO UPDATE
       SET calls = d.calls + excluded.calls,
           prompt_tokens = d.prompt_tokens + excluded.prompt_tokens,
           completion_tokens = d.completion_tokens + excluded.completion_tokens,
           priced_calls = d.priced_calls + excluded.priced_calls,
           cost_usd = d.cost_usd + excluded.cost_usd
    RETURNING d.calls INTO v_calls;
    IF v_calls = 0 THEN
        DELETE FROM memory.llm_call_days d
         WHERE d.user_id = p_call.user_id AND d.day = v_day AND d.agent_id IS NOT DISTINCT FROM p_call.agent_id
           AND d.model = p_call.model AND d.conversation_id IS NOT DISTINCT FROM p_call.conversation_id;
    END IF;
END $$;

-- Keeps memory.llm_call_days: a write takes the row's old figures away and adds its new ones
-- (the worker completing a call, a deleted conversation's calls losing it, an erased user's
-- calls going). SECURITY DEFINER: on PostgreSQL 15 the trigger fired by a foreign key's
-- ON DELETE SET NULL runs as the user who deleted the conversation, who may read the rollup
-- but never write it; it writes only the figures of the row being written.
CREATE OR REPLACE FUNCTION memory._llm_call_days_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (OLD.user_id, OLD.created_at, OLD.agent_id, OLD.model, OLD.conversation_id, OLD.prompt_tokens,
                             OLD.completion_tokens, OLD.cost_usd)
                            IS NOT DISTINCT FROM
                            (NEW.user_id, NEW.created_at, NEW.agent_id, NEW.model, NEW.conversation_id, NEW.prompt_tokens,
                             NEW.completion_tokens, NEW.cost_usd) THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM memory._add_llm_call_day(OLD, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM memory._add_llm_call_day(NEW, 1);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER llm_calls_days
    AFTER INSERT OR DELETE OR UPDATE OF user_id, created_at, agent_id, model, conversation_id, prompt_tokens,
                                       completion_tokens, total_tokens, local_prompt_tokens, cost_usd
    ON memory.llm_calls
    FOR EACH ROW EXECUTE FUNCTION memory._llm_call_days_write();

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

-- NULL while p_user is under memory.max_llm_tokens_per_day LLM tokens and under
-- memory.max_llm_cost_per_day US dollars today (UTC); else the PT429 error to raise, as
-- {sqlstate, message, hint}. Both count the calls of rolled-back turns that the worker has not
-- written yet.
CREATE OR REPLACE FUNCTION memory._token_quota_error(p_user uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_max bigint := memory._max_llm_tokens_per_day();
    v_max_cost numeric := memory._max_llm_cost_per_day()::numeric;
    v_today date := (now() AT TIME ZONE 'UTC')::date;
    v_reset timestamptz := (v_today + 1)::timestamp AT TIME ZONE 'UTC';
    v_used bigint;
    v_cost numeric;
BEGIN
    IF p_user IS NULL OR (v_max <= 0 AND v_max_cost <= 0) THEN
        RETURN NULL;
    END IF;
    SELECT u.day_tokens, u.day_cost_usd INTO v_used, v_cost
      FROM memory.user_usage u WHERE u.user_id = p_user AND u.day_start = v_today;
    IF v_max > 0 THEN
        v_used := coalesce(v_used, 0) + memory._pending_llm_tokens(p_user);
        IF v_used >= v_max THEN
            RETURN jsonb_build_object(
                'sqlstate', 'PT429',
                'message', format('daily LLM token limit reached: %s of %s tokens used today (UTC); retry after %s', v_used, v_max, v_reset),
                'hint', format('Retry in %s seconds. The operator sets memory.max_llm_tokens_per_day.',
                               ceil(extract(epoch FROM v_reset - clock_timestamp()))));
        END IF;
    END IF;
    IF v_max_cost > 0 THEN
        v_cost := coalesce(v_cost, 0) + memory._pending_llm_cost(p_user);
        IF v_cost >= v_max_cost THEN
            RETURN jsonb_build_object(
                'sqlstate', 'PT429',
                'message', format('daily LLM cost limit reached: %s of %s US dollars used today (UTC); retry after %s',
                                  round(v_cost, 4), v_max_cost, v_reset),
                'hint', format('Retry in %s seconds. The operator sets memory.max_llm_cost_per_day.',
                               ceil(extract(epoch FROM v_reset - clock_timestamp()))));
        END IF;
    END IF;
    RETURN NULL;
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

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._llm_call_after_write(),
    memory._llm_call_days_write(),
    memory._add_llm_call_day(memory.llm_calls, integer),
    memory._check_token_quota_of(uuid),
    memory._take_message_quotas(integer),
    memory._add_minute_messages(uuid, integer, timestamptz),
    memory._take_minute_quota(uuid, integer, integer),
    memory._pending_rolled_back_turns(uuid),
    memory._token_quota_error(uuid),
    memory._pending_llm_tokens(uuid),
    memory._max_messages_per_minute(),
    memory._max_llm_tokens_per_day(),
    memory._max_llm_cost_per_day(),
    memory._in_chat_turn()
FROM PUBLIC;
