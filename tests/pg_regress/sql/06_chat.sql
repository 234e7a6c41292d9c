-- memory.chat and memory.continue_chat: what is refused before any LLM call, with nothing written
\i tests/pg_regress/setup.psql
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT (memory.create_agent('helper', 'Be brief.')).id AS agent \gset
SELECT (memory.create_conversation(:'agent')).id AS cid \gset
\set VERBOSITY sqlstate
SELECT memory.chat(NULL, 'hi');
SELECT memory.chat(:'cid', NULL);
SELECT memory.continue_chat(NULL);
-- nothing to answer yet
SELECT memory.continue_chat(:'cid');
-- a turn writes: not in a read-only transaction
BEGIN READ ONLY;
SELECT memory.chat(:'cid', 'hi');
ROLLBACK;
-- someone else's conversation is reported like one that does not exist
SET ROLE regress_app;
SET memory.user_id = '00000000-0000-0000-0000-000000000002';
SELECT memory.chat(:'cid', 'hi');
SELECT memory.continue_chat(:'cid');
-- the library's own helper refuses outside a turn
SELECT memory._record_chat_call(:'cid', NULL, 'm', 1, 1, 2, 1, 1);
RESET ROLE;
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
-- over the daily token limit: PT429 before any call
SET memory.max_llm_tokens_per_day = 100;
INSERT INTO memory.llm_calls (conversation_id, user_id, kind, model, total_tokens, status)
VALUES (:'cid', '00000000-0000-0000-0000-000000000001', 'chat', 'm', 150, 'ok');
SELECT memory.chat(:'cid', 'hi');
-- the message says when the day ends (UTC), the HINT in how many seconds
\set VERBOSITY terse
DO $$
DECLARE
    v_hint text;
BEGIN
    PERFORM memory.chat((SELECT id FROM memory.conversations LIMIT 1), 'hi');
EXCEPTION WHEN SQLSTATE 'PT429' THEN
    GET STACKED DIAGNOSTICS v_hint = PG_EXCEPTION_HINT;
    RAISE NOTICE '% | %', split_part(SQLERRM, ';', 1), regexp_replace(v_hint, '[0-9]+ seconds', 'N seconds');
END $$;
RESET memory.max_llm_tokens_per_day;
SELECT count(*) AS messages FROM memory.conversation_messages WHERE conversation_id = :'cid';
-- usage rows are the owner's to read, and no one else's
SELECT kind, model, total_tokens, status FROM memory.llm_calls;
SET ROLE regress_app;
SET memory.user_id = '00000000-0000-0000-0000-000000000002';
SELECT count(*) AS visible FROM memory.llm_calls;
\set VERBOSITY sqlstate
INSERT INTO memory.llm_calls (user_id, kind, model, status) VALUES ('00000000-0000-0000-0000-000000000002', 'chat', 'm', 'ok');
SELECT count(*) FROM memory.user_usage;
RESET ROLE;
