-- search_messages: websearch syntax, ranking, snippets, filters, tool calls searchable, pages, RLS
\i tests/pg_regress/setup.psql
\set SHOW_CONTEXT never
SET ROLE regress_app;
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT (memory.create_conversation('a0000000-0000-0000-0000-0000000000a1', 'Paris trip')).id AS paris \gset
SELECT (memory.create_conversation('a0000000-0000-0000-0000-0000000000a2', 'Cooking')).id AS cooking \gset
SELECT count(*) FROM (
    SELECT memory.add_message(:'paris', 'user', 'What is the weather in Paris on Saturday?')
    UNION ALL SELECT memory.add_message(:'paris', 'assistant', '', '[{"id":"c1","type":"function","function":{"name":"get_forecast","arguments":"{\"city\":\"Paris\",\"day\":\"saturday\"}"}}]')
    UNION ALL SELECT memory.add_message(:'paris', 'tool', '{"sky": "sunny", "high_c": 23}', tool_call_id => 'c1')
    UNION ALL SELECT memory.add_message(:'paris', 'assistant', 'Sunny and 23 degrees in Paris. Bring sunglasses.')
    UNION ALL SELECT memory.add_message(:'cooking', 'user', 'How long do I boil an egg? <b>soft</b>')
    UNION ALL SELECT memory.add_message(:'cooking', 'assistant', 'Six minutes for a soft egg, ten for a hard one.')
    UNION ALL SELECT memory.add_message(:'cooking', 'assistant', 'Checked the timer.', '[{"id":"g1","tool":"kitchen_timer","input":{"minutes":6},"output":"timer set for six minutes"}]')
) s;
CREATE FUNCTION pg_temp.hits(j jsonb) RETURNS TABLE (title text, seq bigint, role text, snippet text)
LANGUAGE sql AS $$
    SELECT e->>'title', (e->>'seq')::bigint, e->>'role', e->>'snippet' FROM jsonb_array_elements(j->'results') e
     ORDER BY (e->>'rank')::real DESC, e->>'title', (e->>'seq')::bigint  -- (equal ranks come in id order: shown by seq)
$$;
-- plain words, any conversation of the caller; ranked, with a snippet
SELECT * FROM pg_temp.hits(memory.search_messages('paris'));
-- tool call arguments, tool names and results are searchable
SELECT * FROM pg_temp.hits(memory.search_messages('saturday'));
SELECT * FROM pg_temp.hits(memory.search_messages('sunny -sunglasses'));
SELECT * FROM pg_temp.hits(memory.search_messages('get_forecast'));
SELECT * FROM pg_temp.hits(memory.search_messages('timer'));
-- websearch syntax: "phrase", or, -word
SELECT * FROM pg_temp.hits(memory.search_messages('"soft egg"'));
SELECT * FROM pg_temp.hits(memory.search_messages('egg -hard'));
SELECT * FROM pg_temp.hits(memory.search_messages('sunglasses or minutes'));
-- filters: conversation, agent, role, time, tool, has tool calls
SELECT * FROM pg_temp.hits(memory.search_messages('paris', conversation_id => :'cooking'));
SELECT * FROM pg_temp.hits(memory.search_messages('egg', agent_id => 'a0000000-0000-0000-0000-0000000000a2', role => 'user'));
SELECT * FROM pg_temp.hits(memory.search_messages('paris', since => now() + interval '1 minute'));
SELECT * FROM pg_temp.hits(memory.search_messages('paris', until => now() + interval '1 minute', role => 'assistant'));
SELECT * FROM pg_temp.hits(memory.search_messages('paris', tool => 'get_forecast'));
SELECT * FROM pg_temp.hits(memory.search_messages('minutes', tool => 'kitchen_timer'));
SELECT * FROM pg_temp.hits(memory.search_messages('paris', has_tool_calls => false));
-- no stemming in the default configuration; english stems (the operator's setting)
SELECT jsonb_array_length(memory.search_messages('boiling')->'results') AS simple_boiling;
RESET ROLE;
SET memory.search_config = 'english';
SELECT memory.reindex_search() AS reindexed;
SET ROLE regress_app;
SELECT * FROM pg_temp.hits(memory.search_messages('boiling'));
SELECT * FROM pg_temp.hits(memory.search_messages('the'));  -- only stopwords: nothing
RESET ROLE;
RESET memory.search_config;
SELECT memory.reindex_search(2) AS reindexed;
SET ROLE regress_app;
-- pages: the cursor continues where the page ended, nothing twice
SELECT count(*) FROM (SELECT memory.add_message(:'cooking', 'user', 'egg number ' || i) FROM generate_series(1, 7) i) s;
SELECT memory.search_messages('egg', "limit" => 4) AS p1 \gset
SELECT memory.search_messages('egg', "limit" => 4, cursor => (:'p1'::jsonb->>'next_cursor')) AS p2 \gset
SELECT memory.search_messages('egg', "limit" => 4, cursor => (:'p2'::jsonb->>'next_cursor')) AS p3 \gset
SELECT jsonb_array_length(:'p1'::jsonb->'results') AS p1, jsonb_array_length(:'p2'::jsonb->'results') AS p2,
       jsonb_array_length(:'p3'::jsonb->'results') AS p3, :'p3'::jsonb->'next_cursor' AS end_of_results;
SELECT count(DISTINCT e->>'message_id') AS distinct_hits
  FROM (SELECT jsonb_array_elements(:'p1'::jsonb->'results') UNION ALL SELECT jsonb_array_elements(:'p2'::jsonb->'results')
        UNION ALL SELECT jsonb_array_elements(:'p3'::jsonb->'results')) x(e);
-- bad input: clear errors; tsquery syntax never fails in websearch form
SELECT jsonb_array_length(memory.search_messages('paris & | ! ( ''')->'results') AS odd_syntax;
\set VERBOSITY sqlstate
SELECT memory.search_messages(NULL);
SELECT memory.search_messages(repeat('x', 1001));
SELECT memory.search_messages('x', "limit" => 0);
SELECT memory.search_messages('x', role => 'robot');
SELECT memory.search_messages('x', cursor => 'not a cursor');
SELECT memory.search_messages('x', mode => 'fuzzy');
-- without memory.embedding_model: semantic is refused, hybrid answers with the words and says so
SELECT memory.search_messages('x', mode => 'semantic');
\set VERBOSITY default
SELECT memory.search_messages('paris', mode => 'hybrid')->>'mode' AS hybrid_answered_by;
-- the index is memory_ext's: no caller writes search_vector
UPDATE memory.conversation_messages SET search_vector = 'hacked' WHERE conversation_id = :'paris';
-- another user finds nothing of it, whatever the words (even the conversation's own lexeme)
SET memory.user_id = '00000000-0000-0000-0000-000000000002';
SELECT (memory.create_conversation('a0000000-0000-0000-0000-0000000000a1', 'mine')).id AS mine \gset
SELECT count(*) FROM (SELECT memory.add_message(:'mine', 'user', 'conv' || replace(:'paris', '-', '') || ' paris')) s;
SELECT title, role FROM pg_temp.hits(memory.search_messages('paris'));
SELECT title FROM pg_temp.hits(memory.search_messages('conv' || replace(:'paris', '-', '')));
SELECT * FROM pg_temp.hits(memory.search_messages('paris', conversation_id => :'paris'));
RESET ROLE;
