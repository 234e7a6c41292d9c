-- Summaries and their queue
\i tests/pg_regress/setup.psql
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
-- the operator's floor (superuser-only) under the session's threshold
SET memory.min_summarize_threshold = 100;
SET memory.summarize_threshold = 100;
INSERT INTO memory.conversations (id, agent_id) VALUES ('00000000-0000-0000-0000-0000000c0001', '00000000-0000-0000-0000-00000000a9e7')
RETURNING id AS cid \gset
SELECT (memory.add_message(:'cid', 'user', 'short question')).seq;
SELECT memory.should_summarize(:'cid');
SELECT s->'job' AS job, s->'summary' AS summary, s->'uncovered_tokens' AS uncovered FROM memory.summary_status(:'cid') s;
-- crossing the threshold enqueues one job, automatically
SELECT count(*) FROM (SELECT memory.add_message(:'cid', 'assistant', repeat('long answer ', 30)) FROM generate_series(1, 3)) s;
SELECT memory.should_summarize(:'cid');
SELECT s->'job'->'status' AS status, s->'job'->'attempts' AS attempts, s->'should_summarize' AS should FROM memory.summary_status(:'cid') s;
-- request_summary is idempotent: the pending job's id
SELECT memory.request_summary(:'cid') = (memory.summary_status(:'cid')->'job'->>'id')::bigint AS same_job;
-- a session cannot go below the floor
SET memory.min_summarize_threshold = 1000;
SET memory.summarize_threshold = 1;
SELECT memory.summary_status(:'cid')->'threshold' AS threshold;
RESET memory.summarize_threshold;
SET memory.min_summarize_threshold = 100;
-- the queue (one table for every kind of background job) is not for users, and its helpers reveal nothing of someone else's conversation
\set VERBOSITY terse
SELECT kind, count(*) FROM memory.jobs GROUP BY kind;
SET ROLE regress_app;
SET memory.user_id = '00000000-0000-0000-0000-000000000002';
SELECT count(*) FROM memory.jobs;
SELECT memory.request_summary(:'cid');
SELECT memory.request_summary('00000000-0000-0000-0000-000000000404');
-- the implementation behind request_summary is no endpoint of its own
SELECT memory._request_summary(:'cid');
SELECT memory._summary_job_status(:'cid') IS NULL AS nothing;
SELECT memory.can_read(:'cid') AS can_read, memory.can_write(:'cid') AS can_write;
SELECT memory._enqueue_job('summary', :'cid');
RESET ROLE;
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
\set VERBOSITY default
-- a summary covers messages 1..3: uncovered tokens drop, build_context uses it when needed
INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
VALUES (:'cid', 3, 'The user asked a short question; the assistant answered at length.', 'manual');
SELECT s->'summary'->'covers_through_seq' AS covers, s->'summary'->'token_count' AS tokens,
       (s->>'uncovered_tokens')::int < (s->>'total_tokens')::int AS covered
  FROM memory.summary_status(:'cid') s;
SELECT r->'summary_included' AS summary, jsonb_path_query_array(r, '$.messages[*].role') AS roles,
       (r->>'token_count')::int = memory.count_message_tokens(r->'messages') AS exact
  FROM memory.build_context(:'cid', 120) r;
-- summaries are validated on insert and immutable; their counts are memory_ext's
\set VERBOSITY terse
INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (:'cid', 99, 'beyond the last message', 'manual');
INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (:'cid', 0, 'nothing covered', 'manual');
SET ROLE regress_app;
UPDATE memory.conversation_summaries SET token_count = -1000000;
INSERT INTO memory.conversation_summaries (id, conversation_id, covers_through_seq, content, model) OVERRIDING SYSTEM VALUE VALUES (424242, :'cid', 1, 'squat', 'x');
RESET ROLE;
\set VERBOSITY default
-- two summaries with the same coverage: the newer (higher id) is the newest, everywhere
INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
VALUES (:'cid', 3, 'A second summary of the same three messages.', 'manual');
SELECT memory.summary_status(:'cid')->'summary'->>'content' AS status_says,
       (memory._newest_summary(:'cid')).content AS newest,
       memory.build_context(:'cid', 120)->'messages'->0->>'content' AS context_says;
