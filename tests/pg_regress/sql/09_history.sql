-- History: export (json, markdown, openai), import (round trip, all or nothing), fork, rewind
\i tests/pg_regress/setup.psql
\set SHOW_CONTEXT never
SET ROLE regress_app;
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
-- a conversation with hostile content, an OpenAI tool call and a combined record, at fixed times
INSERT INTO memory.conversations (id, agent_id, title, created_at)
VALUES ('c0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000001',
        E'Trip <b>bold</b> ``` # not a heading\nsecond line', '2026-01-02 03:04:05+00');
INSERT INTO memory.conversation_messages (conversation_id, role, content, tool_calls, tool_call_id, name, created_at)
SELECT 'c0000000-0000-0000-0000-000000000001', r, c, t::jsonb, i, n, '2026-01-02 03:05:00+00'::timestamptz + k * interval '1 minute'
  FROM (VALUES
    (1, 'user', E'Hi ``` there <script>alert(1)</script>\n# heading\n````', NULL, NULL, 'alice'),
    (2, 'assistant', '', '[{"id":"call_1","type":"function","function":{"name":"clock","arguments":"{\"tz\":\"UTC\"}"}}]', NULL, NULL),
    (3, 'tool', '12:00', NULL, 'call_1', NULL),
    (4, 'assistant', 'Checking.', '[{"id":"t1","tool":"search","input":{"q":"x"},"output":"found"}]', NULL, NULL),
    (5, 'assistant', 'Done.', NULL, NULL, NULL)) AS v(k, r, c, t, i, n)
 ORDER BY k;
INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
VALUES ('c0000000-0000-0000-0000-000000000001', 3, 'The user asked the time.', 'by-hand');
\set cid c0000000-0000-0000-0000-000000000001

-- markdown: every body in a fence longer than its own backtick runs; one-line fields escaped
SELECT memory.export_conversation(:'cid', 'markdown') #>> '{}' AS markdown;
-- openai: the whole conversation as a /chat/completions payload (combined records expanded)
SELECT jsonb_pretty(memory.export_conversation(:'cid', 'openai'));
-- json: versioned and lossless (ids and times left out of this listing)
SELECT e->>'format' AS format, e->>'version' AS version, e->'conversation'->>'title' AS title,
       jsonb_array_length(e->'messages') AS messages, e->'summaries'->0->>'covers_through_seq' AS summary_covers,
       e->'messages'->1->'tool_calls' AS call
  FROM memory.export_conversation(:'cid') e;

-- import re-creates it: exporting again gives the same document apart from ids and updated_at
SELECT memory.import_conversation(memory.export_conversation(:'cid')) AS copy \gset
CREATE TEMP VIEW without_ids AS
SELECT c.id, e || jsonb_build_object('conversation', (e->'conversation') - 'id'::text - 'updated_at'::text,
           'messages', (SELECT jsonb_agg(m - 'id'::text ORDER BY (m->>'seq')::int) FROM jsonb_array_elements(e->'messages') m),
           'summaries', (SELECT jsonb_agg(s - 'id'::text) FROM jsonb_array_elements(e->'summaries') s)) AS doc
  FROM memory.conversations c, memory.export_conversation(c.id) e;
SELECT (SELECT doc FROM without_ids WHERE id = :'cid') = (SELECT doc FROM without_ids WHERE id = :'copy') AS same_document;
-- from an OpenAI messages array or {"messages": [...]} (the openai export, a JSONL line)
SELECT memory.import_conversation(memory.export_conversation(:'cid', 'openai'), title => 'from openai') AS o \gset
SELECT title, message_count, total_tokens FROM memory.conversations WHERE id = :'o';
SELECT memory.import_conversation('[{"role":"user","content":"hello"},{"role":"assistant","content":null,"tool_calls":[{"id":"c9","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","content":"ok","tool_call_id":"c9"}]') AS a \gset
SELECT agent_id, message_count FROM memory.conversations WHERE id = :'a';

-- all or nothing: the failing message's index is in the error, nothing is left behind
SELECT count(*) AS conversations_before FROM memory.conversations;
SELECT memory.import_conversation('[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"tool","content":"x","tool_call_id":"nope"}]');
SELECT memory.import_conversation('[{"role":"user","content":"a"},{"role":"robot","content":"b"}]');
SELECT memory.import_conversation('[{"role":"user","content":{"parts":["a"]}}]');
SELECT memory.import_conversation('{"format":"memory_ext.conversation","version":2,"messages":[]}');
SELECT memory.import_conversation('"just a string"');
SELECT memory.import_conversation('{"format":"memory_ext.conversation","version":1,"conversation":{"created_at":"yesterday-ish"},"messages":[]}');
SELECT count(*) AS conversations_after FROM memory.conversations;
\set VERBOSITY sqlstate
SELECT memory.import_conversation(NULL);
SELECT memory.export_conversation(:'cid', 'pdf');
\set VERBOSITY default

-- fork: messages 1..at_seq renumbered, the summaries within, the same agent; never a split tool group
SELECT memory.fork_conversation(:'cid', 2);
SELECT memory.fork_conversation(:'cid', 3, 'branch') AS fork \gset
SELECT seq, role, content, tool_call_id FROM memory.conversation_messages WHERE conversation_id = :'fork' ORDER BY seq;
SELECT title, agent_id, message_count, total_tokens, last_seq, metadata->'forked_from'->>'at_seq' AS at_seq,
       metadata->'forked_from'->>'conversation_id' = :'cid' AS from_source
  FROM memory.conversations WHERE id = :'fork';
SELECT covers_through_seq, covered_tokens, token_count, content FROM memory.conversation_summaries WHERE conversation_id = :'fork';
SELECT total_tokens = (SELECT sum(token_count) FROM memory.conversation_messages WHERE conversation_id = :'fork') AS exact_total
  FROM memory.conversations WHERE id = :'fork';
-- the fork is an ordinary conversation: appends continue at the next seq
SELECT seq FROM memory.add_message(:'fork', 'user', 'and in the branch?');
SELECT memory.fork_conversation(:'cid', 9);

-- rewind: drops the messages after to_seq and the summaries over them; totals stay exact
SELECT memory.rewind_conversation(:'cid', 2);
SELECT memory.rewind_conversation(:'cid', 3) AS removed;
SELECT message_count, last_seq, total_tokens = (SELECT sum(token_count) FROM memory.conversation_messages WHERE conversation_id = :'cid') AS exact_total
  FROM memory.conversations WHERE id = :'cid';
SELECT seq FROM memory.add_message(:'cid', 'user', 'regenerate, please');
SELECT memory.rewind_conversation(:'cid', 0) AS removed;
SELECT count(*) AS summaries_left FROM memory.conversation_summaries WHERE conversation_id = :'cid';

-- someone else's conversation: not found, whatever the function
SET memory.user_id = '00000000-0000-0000-0000-000000000002';
\set VERBOSITY sqlstate
SELECT memory.export_conversation(:'fork');
SELECT memory.fork_conversation(:'fork');
SELECT memory.rewind_conversation(:'fork', 0);
\set VERBOSITY default
SELECT count(*) AS visible FROM memory.conversations;
RESET ROLE;

-- templates: save a conversation's messages and agent, start conversations from it
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SET ROLE regress_app;
SELECT memory.save_as_template(:'fork', 'time check') AS tpl \gset
SELECT name, agent_id, jsonb_array_length(messages) AS messages FROM memory.list_templates();
SELECT (memory.create_conversation(NULL, 'from template', template_id => :'tpl')).id AS started \gset
SELECT title, agent_id, message_count, last_seq FROM memory.conversations WHERE id = :'started';
SELECT seq, role, content FROM memory.conversation_messages WHERE conversation_id = :'started' ORDER BY seq;
-- saving under the same name replaces it; a template written by hand is validated on use
SELECT memory.save_as_template(:'started', 'time check') = :'tpl' AS same_template;
INSERT INTO memory.conversation_templates (name, agent_id, messages)
VALUES ('broken', 'a0000000-0000-0000-0000-000000000001', '[{"role":"user","content":"hi"},{"role":"tool","content":"x","tool_call_id":"nope"}]')
RETURNING id AS broken \gset
SELECT count(*) AS conversations_before FROM memory.conversations;
SELECT memory.create_conversation(NULL, template_id => :'broken');
SELECT count(*) AS conversations_after FROM memory.conversations;
-- another user sees no template and cannot use one
SET memory.user_id = '00000000-0000-0000-0000-000000000002';
SELECT count(*) AS visible_templates FROM memory.list_templates();
\set VERBOSITY sqlstate
SELECT memory.create_conversation(NULL, template_id => :'tpl');
\set VERBOSITY default
SELECT memory.delete_template(:'tpl') AS deleted_by_other;
SET memory.user_id = '00000000-0000-0000-0000-000000000001';
SELECT memory.delete_template(:'tpl') AS deleted, memory.delete_template(:'tpl') AS again;

-- list_conversations: metadata containment, a title substring (taken literally), update times, keyset pages
INSERT INTO memory.conversations (agent_id, title, metadata)
SELECT 'a0000000-0000-0000-0000-0000000000b2', 'page ' || i || CASE WHEN i = 3 THEN ' 100%_done' ELSE '' END,
       jsonb_build_object('topic', CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END)
  FROM generate_series(1, 5) i;
SELECT title FROM memory.list_conversations(metadata => '{"topic": "even"}') ORDER BY title;
SELECT title FROM memory.list_conversations(title => '%_');
SELECT title FROM memory.list_conversations(title => 'PAGE 1');
SELECT count(*) FROM memory.list_conversations(updated_after => now() - interval '1 hour', "limit" => 100);
SELECT count(*) FROM memory.list_conversations(updated_before => now() - interval '1 hour');
-- three pages of two by the (updated_at, id) cursor: every conversation of the agent once
CREATE TEMP TABLE pages (n int, id uuid);
DO $$
DECLARE
    v_last memory.conversations;
    v_n int := 0;
BEGIN
    LOOP
        v_n := v_n + 1;
        INSERT INTO pages SELECT v_n, c.id FROM memory.list_conversations('a0000000-0000-0000-0000-0000000000b2', 2,
            updated_before => v_last.updated_at, before_id => v_last.id) c;
        EXIT WHEN NOT FOUND;
        SELECT c.* INTO v_last FROM memory.conversations c
         WHERE c.id = (SELECT p.id FROM pages p JOIN memory.conversations x ON x.id = p.id WHERE p.n = v_n
                        ORDER BY x.updated_at, x.id DESC LIMIT 1);
    END LOOP;
END $$;
SELECT n, count(*) FROM pages GROUP BY n ORDER BY n;
SELECT count(DISTINCT id) AS distinct_rows FROM pages;
\set VERBOSITY sqlstate
SELECT * FROM memory.list_conversations(before_id => gen_random_uuid());
SELECT * FROM memory.list_conversations(title => repeat('x', 201));
\set VERBOSITY default
RESET ROLE;
