-- memory_ext in five minutes: run by scripts/demo.sh against a throwaway server.
\pset footer off
\pset linestyle unicode
\set QUIET on
CREATE EXTENSION memory_ext CASCADE;
-- an ordinary role, as an application server would use (superusers bypass row-level security)
CREATE ROLE demo_app;
SET ROLE demo_app;

\echo '\n== 1. Exact token counts, in SQL (bit-exact with tiktoken)'
SELECT memory.estimate_tokens('The quick brown fox jumps over the lazy dog.') AS cl100k_base,
       memory.estimate_tokens('The quick brown fox jumps over the lazy dog.', 'gpt-4o') AS "gpt-4o (o200k_base)",
       memory.estimate_tokens('The quick brown fox jumps over the lazy dog.', 'chars4') AS "chars/4 guess";

\echo '\n== 2. Who is calling: an app server sets memory.user_id (PostgREST sends JWT claims instead)'
SET memory.user_id = 'a0000000-0000-0000-0000-000000000001';
SELECT memory.current_user_id();
SET memory.summarize_threshold = 400;

\echo '\n== 3. A conversation with a tool call'
SELECT id AS conversation FROM memory.create_conversation('b0000000-0000-0000-0000-000000000007', 'Weekend in Paris') \gset
SELECT seq, role, token_count FROM memory.add_message(:'conversation', 'user', 'What will the weather be in Paris on Saturday?');
SELECT seq, role, token_count FROM memory.add_message(:'conversation', 'assistant', '',
    '[{"id": "call_1", "type": "function", "function": {"name": "get_forecast", "arguments": "{\"city\": \"Paris\", \"day\": \"Saturday\"}"}}]');
SELECT seq, role, token_count FROM memory.add_message(:'conversation', 'tool', '{"high_c": 23, "low_c": 14, "sky": "sunny"}', tool_call_id => 'call_1');
SELECT seq, role, token_count FROM memory.add_message(:'conversation', 'assistant', 'Saturday looks sunny in Paris: 14 to 23 °C.');
SELECT title, message_count, total_tokens FROM memory.conversations WHERE id = :'conversation';

\echo '\n== 4. The context window an LLM gets: valid chat messages, exact count'
SELECT jsonb_pretty(memory.build_context(:'conversation', 8000, 'You are a travel assistant.'));

\echo '\n== 5. A long conversation: only the newest turns fit a small budget, the tool call stays whole'
SELECT count(*) AS added FROM (
  SELECT memory.add_message(:'conversation', CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END,
         CASE WHEN i % 2 = 1 THEN 'Tell me about sight number ' || i || ' in Paris.'
              ELSE 'Sight ' || (i - 1) || ' is worth a visit: ' || repeat('history, art and views; ', 6) END)
    FROM generate_series(1, 30) i) s;
SELECT r->'token_count' AS tokens, r->'max_tokens' AS budget, r->'included_messages' AS included,
       r->'omitted_messages' AS omitted, r->'summary_included' AS summary
  FROM memory.build_context(:'conversation', 300, 'You are a travel assistant.') r;

\echo '\n== 6. The background worker summarizes what no longer fits (offline, no API key: extractive)'
DO $$
BEGIN
  FOR i IN 1..60 LOOP
    EXIT WHEN (SELECT memory.summary_status(c.id)->'job'->>'status' FROM memory.conversations c LIMIT 1) IN ('done', 'failed')
          AND (SELECT memory.summary_status(c.id)->'summary' FROM memory.conversations c LIMIT 1) IS NOT NULL;
    PERFORM pg_sleep(0.25);
  END LOOP;
END $$;
SELECT s->'job'->>'status' AS job, s->'summary'->>'model' AS model, s->'summary'->'covers_through_seq' AS covers_through,
       s->'summary'->>'content' AS summary
  FROM memory.summary_status(:'conversation') s;
SELECT r->'token_count' AS tokens, r->'included_messages' AS included, r->'summary_included' AS summary,
       r->'unsummarized_omitted' AS unsummarized_omitted, left(r->'messages'->1->>'content', 80) || '…' AS second_message
  FROM memory.build_context(:'conversation', 300, 'You are a travel assistant.') r;

\echo '\n== 7. An agent answers in SQL: one call does what the guide endpoint POST /agent/chat does'
\echo '   (the LLM here is a STAND-IN: the fake OpenAI-compatible server of the tests, started by scripts/demo.sh)'
SELECT id AS agent FROM memory.create_agent('concierge', 'You are a hotel concierge. Be brief.',
    tools => '[{"type": "function", "function": {"name": "clock", "description": "The current time",
                 "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}]') \gset
SELECT id AS chat FROM memory.create_conversation(:'agent', 'At the front desk') \gset
SELECT r->'message'->>'content' AS answer, r->'usage'->'total_tokens' AS tokens, r->'context'->'token_count' AS context_tokens
  FROM memory.chat(:'chat', 'Hello! Can you recommend a restaurant?') r;
\echo '-- the model calls a tool: the application runs it, appends the result and continues the turn'
SELECT r->>'finish_reason' AS finish_reason, r->'message'->'tool_calls'->0->'function' AS tool_call
  FROM memory.chat(:'chat', 'What time is it?') r;
SELECT seq AS tool_result_seq FROM memory.add_message(:'chat', 'tool', '21:15 Europe/Paris',
    tool_call_id => (SELECT tool_calls->0->>'id' FROM memory.conversation_messages WHERE conversation_id = :'chat' ORDER BY seq DESC LIMIT 1));
SELECT r->'message'->>'content' AS answer FROM memory.continue_chat(:'chat') r;
\echo '-- asynchronous: with auto_reply, a plain INSERT of the user message gets its answer as a new row'
SELECT auto_reply FROM memory.update_agent(:'agent', auto_reply => true);
INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (:'chat', 'user', 'Thanks, good night!');
DO $$
BEGIN
  FOR i IN 1..40 LOOP
    EXIT WHEN (SELECT role FROM memory.conversation_messages ORDER BY created_at DESC, seq DESC LIMIT 1) = 'assistant';
    PERFORM pg_sleep(0.25);
  END LOOP;
END $$;
SELECT seq, role, coalesce(content, '') AS content, tool_calls IS NOT NULL AS tool_call
  FROM memory.conversation_messages WHERE conversation_id = :'chat' ORDER BY seq;
\echo '-- every LLM call is a usage row'
SELECT kind, model, prompt_tokens, completion_tokens, total_tokens, status FROM memory.llm_calls ORDER BY id;

\echo '\n== 8. Row-level security: another user sees nothing'
SET memory.user_id = 'a0000000-0000-0000-0000-000000000002';
SELECT count(*) AS visible_conversations FROM memory.conversations;
\set ON_ERROR_STOP off
SELECT memory.build_context(:'conversation');
\set ON_ERROR_STOP on
\echo '\nDone.'
