-- Conversations and messages, as an application server uses them
\i tests/pg_regress/setup.psql
SET ROLE regress_app;
-- no identity: nothing visible, nothing writable
SELECT memory.current_user_id();
SELECT memory.create_conversation('00000000-0000-0000-0000-00000000a9e7');
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT memory.current_user_id();
CREATE TEMP TABLE c AS
SELECT id FROM memory.create_conversation('00000000-0000-0000-0000-00000000a9e7', 'Trip planning', '{"channel": "web"}');
SELECT title, encoding, total_tokens, message_count, metadata FROM memory.conversations;
SELECT seq, role, token_count FROM memory.add_message((SELECT id FROM c), 'system', 'You plan trips.');
SELECT seq, role, token_count FROM memory.add_message((SELECT id FROM c), 'user', 'What is the weather in Paris?', name => 'ana');
-- an OpenAI tool call and its result
SELECT seq, role, token_count FROM memory.add_message((SELECT id FROM c), 'assistant', '',
    '[{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]');
SELECT seq, role, token_count FROM memory.add_message((SELECT id FROM c), 'tool', '{"temp_c": 21, "sky": "clear"}', tool_call_id => 'call_1');
-- the original guide's combined record: call and result in one row
SELECT seq, role, token_count FROM memory.add_message((SELECT id FROM c), 'assistant', 'Let me check trains too.',
    '[{"id": "t1", "tool": "search_trains", "input": {"from": "Lyon"}, "output": "08:04, 10:04"}]');
-- a plain INSERT does the same work (PostgREST POST /conversation_messages)
INSERT INTO memory.conversation_messages (conversation_id, role, content)
SELECT id, 'assistant', 'It is 21°C and clear in Paris; trains leave Lyon at 08:04 and 10:04.' FROM c
RETURNING seq, role, token_count;
SELECT total_tokens = (SELECT sum(token_count) FROM memory.conversation_messages) AS totals_exact, message_count FROM memory.conversations;
-- pages from the newest end
SELECT jsonb_path_query_array(p, '$.messages[*].seq') AS seqs, p->'has_more' AS has_more, p->'next_before_seq' AS next
  FROM memory.get_messages((SELECT id FROM c), 4) p;
SELECT jsonb_path_query_array(p, '$.messages[*].seq') AS seqs, p->'has_more' AS has_more, p->'next_before_seq' AS next
  FROM memory.get_messages((SELECT id FROM c), 4, 3) p;
SELECT title FROM memory.list_conversations('00000000-0000-0000-0000-00000000a9e7');
-- bad input: clear errors, nothing written
\set VERBOSITY terse
SELECT memory.add_message((SELECT id FROM c), 'robot', 'beep');
SELECT memory.add_message((SELECT id FROM c), 'tool', 'orphan');
SELECT memory.add_message((SELECT id FROM c), 'tool', 'orphan', tool_call_id => 'call_404');
SELECT memory.add_message((SELECT id FROM c), 'tool', 'again', tool_call_id => 'call_1');
SELECT memory.add_message((SELECT id FROM c), 'assistant', '', '[{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]');
SELECT memory.add_message((SELECT id FROM c), 'assistant', '', '{"id": "x"}');
SELECT memory.add_message('00000000-0000-0000-0000-000000000404', 'user', 'hello?');
SELECT memory.get_messages((SELECT id FROM c), 0);
UPDATE memory.conversation_messages SET content = 'rewritten' WHERE seq = 2;
\set VERBOSITY default
SELECT message_count FROM memory.conversations;
-- another user sees nothing of it
SET memory.user_id = '00000000-0000-0000-0000-000000000002';
SELECT count(*) FROM memory.conversations;
SELECT count(*) FROM memory.conversation_messages;
-- the same error as for an id that does not exist
DO $$ BEGIN PERFORM memory.get_messages((SELECT id FROM c));
   EXCEPTION WHEN no_data_found THEN RAISE NOTICE 'no_data_found: %', replace(SQLERRM, (SELECT id FROM c)::text, '<id>'); END $$;
SELECT memory.delete_conversation((SELECT id FROM c));
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT memory.delete_conversation((SELECT id FROM c));
SELECT count(*) FROM memory.conversation_messages;
RESET ROLE;
DROP TABLE c;

-- Idempotent appends: a retry with the same key returns the stored message
SET ROLE regress_app;
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT id AS icid FROM memory.create_conversation('00000000-0000-0000-0000-00000000a9e7') \gset
SELECT seq, content FROM memory.add_message(:'icid', 'user', 'hello', idempotency_key => 'req-1');
SELECT seq, content FROM memory.add_message(:'icid', 'user', 'hello', idempotency_key => 'req-1');
SELECT message_count FROM memory.conversations WHERE id = :'icid';
\set VERBOSITY terse
SELECT seq FROM memory.add_message(:'icid', 'user', 'something else', idempotency_key => 'req-1');
\set VERBOSITY default
RESET ROLE;
