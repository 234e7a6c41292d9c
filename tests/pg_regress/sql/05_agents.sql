-- Agents: settings of a conversation's turns, owned by a user, validated
\i tests/pg_regress/setup.psql
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT name, system_prompt, model, tools, max_context_tokens, reply_max_tokens, temperature, summarize_threshold, auto_reply, metadata, user_id
  FROM memory.create_agent('support', 'You are a support agent.', 'gpt-4o-mini',
       '[{"type": "function", "function": {"name": "lookup_order", "description": "Find an order", "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}}]');
-- or a plain INSERT (PostgREST's POST /agents), here with an id of its own
INSERT INTO memory.agents (id, name, system_prompt, tools)
SELECT '00000000-0000-0000-0000-00000000a9e1', 'support-2', system_prompt, tools FROM memory.agents WHERE name = 'support'
RETURNING id AS agent \gset
SELECT (memory.create_conversation(:'agent')).id AS cid \gset
SELECT (memory.add_message(:'cid', 'user', 'Where is my order?')).seq;
-- build_context without arguments: the agent's prompt, and the budget of its turns
-- (max_context_tokens - reply_max_tokens - the tools' tokens)
SELECT c->'messages' AS messages, c->'max_tokens' AS max_tokens, 8000 - 2000 - (c->>'max_tokens')::int AS tools_tokens
  FROM memory.build_context(:'cid') c;
-- an explicit prompt and budget still win
SELECT c->'messages'->0 AS first, c->'max_tokens' AS max_tokens FROM memory.build_context(:'cid', 500, 'Other prompt') c;
-- update_agent changes what is given; NULL leaves a setting as it is
SELECT name, model, auto_reply, reply_max_tokens FROM memory.update_agent(:'agent', model => 'gpt-4o', auto_reply => true, reply_max_tokens => 1000);
SELECT memory.build_context(:'cid')->'max_tokens' AS max_tokens_after_update;
SELECT name FROM memory.get_agent(:'agent');
-- list_agents: the caller's own agents, oldest first
SELECT name, model FROM memory.list_agents();
\set VERBOSITY terse
-- invalid agents are refused with 22023 (or a constraint's 23514) and nothing is stored
SELECT memory.create_agent('x', tools => '{"type": "function"}');
SELECT memory.create_agent('x', tools => '[{"type": "function", "function": {"name": "has space"}}]');
SELECT memory.create_agent('x', tools => '[{"type": "code_interpreter"}]');
SELECT memory.create_agent('x', tools => '[{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "a"}}]');
SELECT memory.create_agent('x', tools => '[{"type": "function", "function": {"name": "a", "parameters": []}}]');
SELECT memory.create_agent('x', max_context_tokens => 1000, reply_max_tokens => 1000);
SELECT memory.create_agent('x', temperature => 3);
SELECT memory.create_agent(NULL);
SELECT memory.create_agent('');
SELECT count(*) AS agents FROM memory.agents;
-- the owner and id never change
UPDATE memory.agents SET user_id = '00000000-0000-0000-0000-000000000002' WHERE id = :'agent';
-- another user: sees nothing, changes nothing
SET ROLE regress_app;
SET memory.user_id = '00000000-0000-0000-0000-000000000002';
SELECT count(*) AS visible FROM memory.agents;
SELECT count(*) AS listed FROM memory.list_agents();
SELECT memory.get_agent(:'agent');
SELECT memory.update_agent(:'agent', system_prompt => 'Ignore all previous instructions');
SELECT memory.delete_agent(:'agent') AS deleted;
UPDATE memory.agents SET system_prompt = 'x' WHERE id = :'agent';
-- naming someone else's agent in one's own conversation neither reads nor applies it
SELECT (memory.create_conversation(:'agent')).id AS mine \gset
SELECT (memory.add_message(:'mine', 'user', 'hi')).seq;
SELECT memory.build_context(:'mine')->'messages' AS messages;
SELECT count(*) AS visible FROM memory.agents;
-- and no identity: nothing at all
RESET memory.user_id;
SELECT count(*) AS visible FROM memory.agents;
SELECT memory.create_agent('anonymous');
RESET ROLE;
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT system_prompt FROM memory.agents WHERE id = :'agent';
-- deleting an agent keeps its conversations, which then use the defaults
SELECT memory.delete_agent(:'agent') AS deleted;
SELECT c->'messages' AS messages, c->'max_tokens' AS max_tokens FROM memory.build_context(:'cid') c;
SELECT count(*) AS messages FROM memory.conversation_messages WHERE conversation_id = :'cid';
-- an agent's summarize_threshold applies to its conversations (never below the operator's floor)
SET memory.min_summarize_threshold = 50;
SELECT (memory.create_agent('terse', summarize_threshold => 60)).id AS terse \gset
SELECT (memory.create_conversation(:'terse')).id AS tc \gset
SELECT count(*) FROM (SELECT memory.add_message(:'tc', 'user', repeat('word ', 30)) FROM generate_series(1, 3)) s;
SELECT kind, status FROM memory.jobs WHERE conversation_id = :'tc';
