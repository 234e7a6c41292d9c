-- Per-user limits: messages per minute on every route, LLM tokens per day; PT429 and nothing written
\i tests/pg_regress/setup.psql
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT (memory.create_conversation('00000000-0000-0000-0000-0000000000a1')).id AS cid \gset
-- (the windows are calendar minutes: stay clear of a minute's end)
DO $$ BEGIN
    IF extract(second FROM clock_timestamp()) > 55 THEN
        PERFORM pg_sleep(61 - extract(second FROM clock_timestamp()));
    END IF;
END $$;
-- (the operator's settings: superuser-only)
SET memory.max_messages_per_minute = 3;
SET ROLE regress_app;
SET memory.max_messages_per_minute = 1000;
\set VERBOSITY sqlstate
-- the fourth message in one minute is refused, whatever the route; the statement writes nothing
SELECT count(*) FROM (SELECT memory.add_message(:'cid', 'user', 'm' || i) FROM generate_series(1, 4) i) s;
SELECT count(*) AS messages FROM memory.conversation_messages WHERE conversation_id = :'cid';
SELECT count(*) FROM (SELECT memory.add_message(:'cid', 'user', 'm' || i) FROM generate_series(1, 3) i) s;
INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (:'cid', 'user', 'by insert');
SELECT memory.add_message(:'cid', 'tool', 'x', tool_call_id => 'nope');
SELECT count(*) AS messages FROM memory.conversation_messages WHERE conversation_id = :'cid';
\set VERBOSITY default
-- the message says when to retry, the HINT how long
DO $$
DECLARE
    v_hint text;
BEGIN
    PERFORM memory.add_message((SELECT id FROM memory.conversations LIMIT 1), 'user', 'again');
EXCEPTION WHEN SQLSTATE 'PT429' THEN
    GET STACKED DIAGNOSTICS v_hint = PG_EXCEPTION_HINT;
    RAISE NOTICE '% | retry time given: % | hint: %', split_part(SQLERRM, ';', 1), SQLERRM LIKE '%retry after %',
        regexp_replace(v_hint, '[0-9]+ seconds', 'N seconds');
END $$;
-- another user has a quota of their own
SET memory.user_id = '00000000-0000-0000-0000-000000000002';
SELECT (memory.create_conversation('00000000-0000-0000-0000-0000000000a1')).id AS other \gset
SELECT count(*) FROM (SELECT memory.add_message(:'other', 'user', 'm' || i) FROM generate_series(1, 3) i) s;
RESET ROLE;
-- 0 means no limit
SET memory.max_messages_per_minute = 0;
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT count(*) FROM (SELECT memory.add_message(:'cid', 'user', 'm' || i) FROM generate_series(1, 10) i) s;
-- tokens per day: checked before each LLM call (chat, request_reply, an insert that queues an auto-reply)
SET memory.max_llm_tokens_per_day = 1000;
SELECT (memory.create_agent('auto', auto_reply => true)).id AS auto \gset
SELECT (memory.create_conversation(:'auto')).id AS ac \gset
INSERT INTO memory.llm_calls (conversation_id, user_id, kind, model, prompt_tokens, completion_tokens, total_tokens, status)
VALUES (:'ac', '00000000-0000-0000-0000-000000000001', 'reply', 'm', 900, 150, 1050, 'ok');
SELECT day_tokens FROM memory.user_usage WHERE user_id = '00000000-0000-0000-0000-000000000001';
\set VERBOSITY sqlstate
SELECT memory.request_reply(:'ac');
INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (:'ac', 'user', 'hello?');
SELECT count(*) AS messages FROM memory.conversation_messages WHERE conversation_id = :'ac';
-- messages that queue no LLM call are not limited by tokens
INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (:'ac', 'system', 'note');
SELECT count(*) AS messages FROM memory.conversation_messages WHERE conversation_id = :'ac';
RESET memory.max_llm_tokens_per_day;
SELECT memory.request_reply(:'ac') > 0 AS queued;
