-- build_context: the token window
\i tests/pg_regress/setup.psql
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
CREATE TEMP TABLE c AS SELECT id FROM memory.create_conversation('00000000-0000-0000-0000-00000000a9e7');
SELECT count(*) FROM (
  SELECT memory.add_message((SELECT id FROM c), CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END,
                            'message ' || i || ': ' || repeat('lorem ipsum ', 10))
    FROM generate_series(1, 20) i) s;
SELECT (memory.add_message((SELECT id FROM c), 'assistant', '',
    '[{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
      {"id": "c2", "type": "function", "function": {"name": "lookup", "arguments": "{\"x\":1}"}}]')).seq;
SELECT (memory.add_message((SELECT id FROM c), 'tool', 'first result', tool_call_id => 'c1')).seq;
SELECT (memory.add_message((SELECT id FROM c), 'tool', 'second result', tool_call_id => 'c2')).seq;
SELECT (memory.add_message((SELECT id FROM c), 'user', 'thanks!')).seq;
-- everything fits
SELECT r->'token_count' AS tokens, r->'included_messages' AS included, r->'omitted_messages' AS omitted, r->'overflow' AS overflow
  FROM memory.build_context((SELECT id FROM c), 8000, 'You are terse.') r;
-- a small budget: the newest run that fits, the tool group whole, token_count exact
SELECT r->'token_count' AS tokens, r->'included_messages' AS included, r->'omitted_messages' AS omitted,
       jsonb_path_query_array(r, '$.messages[*].role') AS roles,
       (r->>'token_count')::int = memory.count_message_tokens(r->'messages') AS exact
  FROM memory.build_context((SELECT id FROM c), 150, 'You are terse.') r;
-- the tool group does not fit whole: it is dropped with everything before it, never split
SELECT r->'token_count' AS tokens, r->'overflow' AS overflow, jsonb_path_query_array(r, '$.messages[*].role') AS roles
  FROM memory.build_context((SELECT id FROM c), 40) r;
-- a budget smaller than the newest message: it is sent anyway, flagged
SELECT r->'token_count' AS tokens, r->'overflow' AS overflow, jsonb_path_query_array(r, '$.messages[*].role') AS roles
  FROM memory.build_context((SELECT id FROM c), 8) r;
-- a summary (as the worker writes it) replaces what it covers when not everything fits
INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
SELECT id, 18, 'The user and the assistant exchanged 18 lorem ipsum messages.', 'manual' FROM c;
SELECT r->'messages'->0 AS first, r->'summary_included' AS summary, r->'unsummarized_omitted' AS unsummarized,
       (r->>'token_count')::int <= 150 AS within
  FROM memory.build_context((SELECT id FROM c), 150) r;
-- ... and is not used when everything fits
SELECT r->'summary_included' AS summary, r->'included_messages' AS included FROM memory.build_context((SELECT id FROM c)) r;
-- the same algorithm over a given array
SELECT memory.build_context_from('[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"}]', 100, 'Be kind.');
-- errors
\set VERBOSITY terse
SELECT memory.build_context((SELECT id FROM c), 0);
SELECT memory.build_context((SELECT id FROM c), 10, repeat('a long system prompt ', 10));
SELECT memory.build_context(NULL);
SELECT memory.build_context('00000000-0000-0000-0000-000000000404');
SELECT memory.build_context_from('{"role": "user"}');
\set VERBOSITY default
DROP TABLE c;
-- The system prompt counts when deciding whether the history fits: a conversation whose history
-- fits alone but not beside the prompt uses its summary.
SELECT id AS sid FROM memory.create_conversation('00000000-0000-0000-0000-00000000a9e7') \gset
SELECT count(*) FROM (
  SELECT memory.add_message(:'sid', CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END, 'turn ' || i || ': ' || repeat('word ', 20))
    FROM generate_series(1, 20) i) s;
INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
VALUES (:'sid', 10, 'The first ten turns were about words.', 'manual');
SELECT total_tokens + 3 AS history, memory.message_tokens('system', repeat('Be brief. ', 40)) AS prompt
  FROM memory.conversations WHERE id = :'sid' \gset
-- one token short of everything: the summary stands in for turns 1..10
SELECT r->'summary_included' AS summary, r->'included_messages' AS included, r->'omitted_messages' AS omitted,
       r->'unsummarized_omitted' AS unsummarized, (r->>'token_count')::int <= :history + :prompt - 1 AS within,
       (r->>'token_count')::int = memory.count_message_tokens(r->'messages') AS exact
  FROM memory.build_context(:'sid', :history + :prompt - 1, repeat('Be brief. ', 40)) r;
-- exactly at the limit: everything fits, no summary
SELECT r->'summary_included' AS summary, r->'included_messages' AS included, (r->>'token_count')::int = :history + :prompt AS exact_fit
  FROM memory.build_context(:'sid', :history + :prompt, repeat('Be brief. ', 40)) r;
-- a summary that covers everything but the newest message
INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
VALUES (:'sid', 19, 'Nineteen turns about words.', 'manual');
SELECT jsonb_path_query_array(r, '$.messages[*].role') AS roles, r->'included_messages' AS included, r->'summary_included' AS summary
  FROM memory.build_context(:'sid', :prompt + 80, repeat('Be brief. ', 40)) r;
