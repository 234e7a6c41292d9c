-- Usage analytics for dashboards. Views with security_invoker: the caller's row-level security
-- applies to every table they read, so a user sees the figures of what it may read (its own
-- conversations and those shared with it, its own LLM calls), a caller without identity sees
-- nothing, and a superuser or BYPASSRLS role (an operator's dashboard) sees everyone's.
-- usage_daily, conversation_activity and conversation_costs read daily figures
-- (memory.message_days: messages per conversation, day and author, under the messages' RLS;
-- memory.llm_call_days: calls per user, day, agent, model and conversation, under the calls'
-- RLS, kept by a trigger in the transaction of each call): a dashboard reads days, not
-- messages. tool_usage (over the messages with tool calls) and agent_performance (percentiles)
-- aggregate on read.

-- The messages after each conversation's mark (memory.message_days_marks), per conversation, UTC
-- day and author: the part of memory.message_days the worker has not rolled up yet (the messages
-- of the last second or so). Under the caller's RLS. A function, not part of the view, so that
-- the planner sees it as the few rows it is: inline, its estimate (a third of all conversations
-- behind their marks) priced a dashboard's query high enough for JIT compilation, ten times the
-- query's own time.
CREATE FUNCTION memory._message_days_tail()
RETURNS TABLE (conversation_id uuid, day date, author_id uuid, messages bigint, tokens bigint, tool_calls bigint,
               last_activity timestamptz)
LANGUAGE plpgsql STABLE ROWS 100 SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT m.conversation_id, (m.created_at AT TIME ZONE 'UTC')::date, m.author_id, count(*), sum(m.token_count)::bigint,
           sum(memory._tool_call_count(m.tool_calls))::bigint, max(m.created_at)
      FROM memory.conversations c
      LEFT JOIN memory.message_days_marks k ON k.conversation_id = c.id
      -- per conversation behind its mark, its messages after it through the (conversation_id, seq)
      -- index (OFFSET 0 keeps the planner from joining all messages instead)
      CROSS JOIN LATERAL (SELECT m.* FROM memory.conversation_messages m
                           WHERE m.conversation_id = c.id AND m.seq > coalesce(k.through_seq, 0) OFFSET 0) m
     WHERE c.last_seq > coalesce(k.through_seq, 0)
     GROUP BY 1, 2, 3;
END $$;

-- Per conversation, UTC day and author: the messages stored, their tokens and tool calls, and the
-- last one's time. Exact at every moment: the worker's rollup (memory.message_days_rollup, up to
-- each conversation's mark) plus the messages after the mark (memory._message_days_tail); those
-- are the messages of the last second or so (or all messages written while no worker runs).
CREATE VIEW memory.message_days WITH (security_invoker = true) AS
SELECT d.conversation_id, d.day, d.author_id,
       sum(d.messages)::bigint AS messages,
       sum(d.tokens)::bigint AS tokens,
       sum(d.tool_calls)::bigint AS tool_calls,
       max(d.last_activity) AS last_activity
  FROM (SELECT r.conversation_id, r.day, r.author_id, r.messages, r.tokens, r.tool_calls, r.last_activity
          FROM memory.message_days_rollup r
        UNION ALL
        SELECT t.conversation_id, t.day, t.author_id, t.messages, t.tokens, t.tool_calls, t.last_activity
          FROM memory._message_days_tail() t) d
 GROUP BY d.conversation_id, d.day, d.author_id;

-- Per day (UTC), user (a message's author, or the conversation's owner for messages written
-- without an identity), agent and model: stored messages, their tokens
-- and tool calls (rows with model NULL: messages carry no model), and LLM calls with the tokens
-- the provider reported and their cost in US dollars (rows with the call's model; cost_usd sums
-- the calls whose model had a price, NULL when none had).
CREATE VIEW memory.usage_daily WITH (security_invoker = true) AS
SELECT u.day, u.user_id, u.agent_id, u.model,
       sum(u.messages)::bigint AS messages,
       sum(u.stored_tokens)::bigint AS stored_tokens,
       sum(u.tool_calls)::bigint AS tool_calls,
       sum(u.llm_calls)::bigint AS llm_calls,
       sum(u.prompt_tokens)::bigint AS prompt_tokens,
       sum(u.completion_tokens)::bigint AS completion_tokens,
       sum(u.cost_usd) AS cost_usd
  FROM (SELECT d.day, coalesce(d.author_id, c.user_id) AS user_id, c.agent_id, NULL::text AS model,
               sum(d.messages) AS messages, sum(d.tokens) AS stored_tokens, sum(d.tool_calls) AS tool_calls,
               0 AS llm_calls, 0 AS prompt_tokens, 0 AS completion_tokens, NULL::numeric AS cost_usd
          FROM memory.message_days d JOIN memory.conversations c ON c.id = d.conversation_id
         GROUP BY 1, 2, 3
        UNION ALL
        SELECT l.day, l.user_id, l.agent_id, l.model,
               0, 0, 0, sum(l.calls), sum(l.prompt_tokens), sum(l.completion_tokens),
               CASE WHEN sum(l.priced_calls) > 0 THEN sum(l.cost_usd) END
          FROM memory.llm_call_days l
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
SELECT d.conversation_id, c.title, c.user_id, c.agent_id, d.day,
       sum(d.messages)::bigint AS messages,
       sum(d.tokens)::bigint AS tokens,
       max(d.last_activity) AS last_activity
  FROM memory.message_days d JOIN memory.conversations c ON c.id = d.conversation_id
 GROUP BY d.conversation_id, c.title, c.user_id, c.agent_id, d.day;

-- Per agent (and the user whose calls they were) from the LLM calls of chat turns, reply jobs and
-- summaries: calls, failures, latency p50/p95 in ms, completion tokens per answered turn, and the
-- calls' cost in US dollars (of those whose model had a price).
CREATE VIEW memory.agent_performance WITH (security_invoker = true) AS
SELECT l.agent_id, l.user_id,
       count(*) AS llm_calls,
       count(*) FILTER (WHERE l.status = 'error') AS failures,
       count(*) FILTER (WHERE l.status = 'discarded') AS discarded,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY l.latency_ms) AS latency_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY l.latency_ms) AS latency_p95_ms,
       avg(l.completion_tokens) FILTER (WHERE l.status = 'ok' AND l.kind IN ('chat', 'reply')) AS tokens_per_reply,
       max(l.created_at) AS last_call,
       sum(l.cost_usd) AS cost_usd
  FROM memory.llm_calls l
 GROUP BY l.agent_id, l.user_id;

-- Per conversation, user (whose calls they were) and day (UTC): the LLM calls made for the
-- conversation (chat turns, replies, summaries), their tokens as the provider reported them, and
-- their cost in US dollars; unpriced_calls counts those whose model had no price (not in cost_usd).
-- A user sees the calls charged to it. What one conversation cost so far:
--   SELECT sum(cost_usd) FROM memory.conversation_costs WHERE conversation_id = ...
CREATE VIEW memory.conversation_costs WITH (security_invoker = true) AS
SELECT l.conversation_id, l.user_id, l.day,
       sum(l.calls)::bigint AS llm_calls,
       sum(l.prompt_tokens)::bigint AS prompt_tokens,
       sum(l.completion_tokens)::bigint AS completion_tokens,
       CASE WHEN sum(l.priced_calls) > 0 THEN sum(l.cost_usd) END AS cost_usd,
       sum(l.calls - l.priced_calls)::bigint AS unpriced_calls
  FROM memory.llm_call_days l
 WHERE l.conversation_id IS NOT NULL
 GROUP BY l.conversation_id, l.user_id, l.day;

GRANT SELECT ON memory.message_days, memory.usage_daily, memory.tool_usage, memory.conversation_activity, memory.agent_performance,
                memory.conversation_costs TO PUBLIC;
