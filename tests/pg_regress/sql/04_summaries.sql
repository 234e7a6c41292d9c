-- Summaries and their queue (SPEC §4.5)
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SET memory.summarize_threshold = 100;
CREATE TEMP TABLE c AS SELECT id FROM memory.create_conversation('00000000-0000-0000-0000-00000000a9e7');
SELECT (memory.add_message((SELECT id FROM c), 'user', 'short question')).seq;
SELECT memory.should_summarize((SELECT id FROM c));
SELECT s->'job' AS job, s->'summary' AS summary, s->'uncovered_tokens' AS uncovered FROM memory.summary_status((SELECT id FROM c)) s;
-- crossing the threshold enqueues one job, automatically
SELECT count(*) FROM (SELECT memory.add_message((SELECT id FROM c), 'assistant', repeat('long answer ', 30)) FROM generate_series(1, 3)) s;
SELECT memory.should_summarize((SELECT id FROM c));
SELECT s->'job'->'status' AS status, s->'job'->'attempts' AS attempts, s->'should_summarize' AS should FROM memory.summary_status((SELECT id FROM c)) s;
-- request_summary is idempotent: the pending job's id
SELECT memory.request_summary((SELECT id FROM c)) = (memory.summary_status((SELECT id FROM c))->'job'->>'id')::bigint AS same_job;
-- the queue itself is not for users
\set VERBOSITY terse
SELECT count(*) FROM memory.summary_jobs;
SET ROLE regress_app;
SELECT count(*) FROM memory.summary_jobs;
SELECT memory.request_summary('00000000-0000-0000-0000-000000000404');
SELECT memory._enqueue_summary((SELECT id FROM c), now());
RESET ROLE;
\set VERBOSITY default
-- a summary covers messages 1..3: uncovered tokens drop, build_context uses it when needed
INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
SELECT id, 3, 'The user asked a short question; the assistant answered at length.', 'manual' FROM c;
SELECT s->'summary'->'covers_through_seq' AS covers, s->'summary'->'token_count' AS tokens,
       (s->>'uncovered_tokens')::int < (s->>'total_tokens')::int AS covered
  FROM memory.summary_status((SELECT id FROM c)) s;
SELECT r->'summary_included' AS summary, jsonb_path_query_array(r, '$.messages[*].role') AS roles,
       (r->>'token_count')::int = memory.count_message_tokens(r->'messages') AS exact
  FROM memory.build_context((SELECT id FROM c), 120) r;
DROP TABLE c;
DROP ROLE regress_app;
