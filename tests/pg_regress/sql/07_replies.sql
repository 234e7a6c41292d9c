-- Reply jobs: request_reply, auto_reply on any insert of a user message, reply_status
\i tests/pg_regress/setup.psql
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT (memory.create_agent('helper')).id AS agent \gset
INSERT INTO memory.conversations (id, agent_id) VALUES ('00000000-0000-0000-0000-0000000c0007', :'agent') RETURNING id AS cid \gset
SELECT (memory.add_message(:'cid', 'user', 'Hello')).seq;
-- no auto_reply: nothing is queued until asked
SELECT count(*) AS jobs FROM memory.jobs WHERE kind = 'reply';
SELECT memory.request_reply(:'cid') AS job \gset
-- one pending reply per conversation: asking again gives the same job
SELECT memory.request_reply(:'cid') = :job AS same_job;
SELECT s->>'status' AS status, s->'attempts' AS attempts, s->'message_id' AS message_id, s->>'conversation_id' = :'cid' AS its_conversation
  FROM memory.reply_status(:job) s;
-- with auto_reply, a plain INSERT of a user message queues the reply; other roles do not
SELECT (memory.create_agent('auto', auto_reply => true)).id AS auto \gset
SELECT (memory.create_conversation(:'auto')).id AS ac \gset
INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (:'ac', 'system', 'context');
SELECT count(*) AS jobs FROM memory.jobs WHERE kind = 'reply' AND conversation_id = :'ac';
INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (:'ac', 'user', 'Hi');
INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (:'ac', 'user', 'Anyone?');
SELECT status, attempts FROM memory.jobs WHERE kind = 'reply' AND conversation_id = :'ac';
-- someone else's conversation or job: reported as not existing
\set VERBOSITY terse
SET ROLE regress_app;
SET memory.user_id = '00000000-0000-0000-0000-000000000002';
SELECT memory.request_reply(:'cid');
SELECT memory.reply_status(:job);
SELECT memory.request_reply(NULL);
SELECT memory.reply_status(NULL);
RESET ROLE;
-- the queue counts each user's queued jobs (the worker walks waiting users, not the whole queue);
-- deleting a conversation as its owner takes its jobs, and the count follows
SELECT queued FROM memory.queue_turns WHERE user_id = '00000000-0000-0000-0000-000000000001';
SET ROLE regress_app;
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT memory.delete_conversation(:'ac');
RESET ROLE;
SELECT queued, (SELECT count(*) FROM memory.jobs WHERE status = 'queued') AS queued_jobs
  FROM memory.queue_turns WHERE user_id = '00000000-0000-0000-0000-000000000001';
