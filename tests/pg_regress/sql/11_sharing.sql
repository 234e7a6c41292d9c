-- Sharing (viewer, editor), share links, archive, erasure and the analytics views
\i tests/pg_regress/setup.psql
\set SHOW_CONTEXT never
\set owner 00000000-0000-0000-0000-00000000a001
\set viewer 00000000-0000-0000-0000-00000000a002
\set editor 00000000-0000-0000-0000-00000000a003
\set cid c0000000-0000-0000-0000-00000000a001
SET ROLE regress_app;
SET memory.user_id = :'owner';
INSERT INTO memory.conversations (id, agent_id, title) VALUES (:'cid', 'a0000000-0000-0000-0000-000000000001', 'Team plan');
-- a multi-row INSERT: seqs in order, counters updated once for the statement
INSERT INTO memory.conversation_messages (conversation_id, role, content, tool_calls, tool_call_id)
VALUES (:'cid', 'user', 'Plan the offsite', NULL, NULL),
       (:'cid', 'assistant', '', '[{"id":"call_1","type":"function","function":{"name":"calendar","arguments":"{}"}}]', NULL),
       (:'cid', 'tool', 'Friday is free', NULL, 'call_1'),
       (:'cid', 'assistant', 'Friday it is.', NULL, NULL);
SELECT message_count, last_seq, total_tokens = (SELECT sum(token_count) FROM memory.conversation_messages WHERE conversation_id = :'cid') AS exact
  FROM memory.conversations WHERE id = :'cid';
-- share: viewer and editor; errors for bad roles, the owner, unknown conversations
SELECT user_id, role FROM memory.share_conversation(:'cid', :'viewer');
SELECT user_id, role FROM memory.share_conversation(:'cid', :'editor', 'editor');
SELECT memory.share_conversation(:'cid', :'viewer', 'admin');
SELECT memory.share_conversation(:'cid', :'owner', 'viewer');
SELECT memory.share_conversation('c0000000-0000-0000-0000-00000000ffff', :'viewer');
SELECT user_id, role FROM memory.list_members(:'cid');
SELECT title, access FROM memory.list_conversations();

-- the viewer reads, and may not write or manage
SET memory.user_id = :'viewer';
SELECT title, access FROM memory.list_conversations();
SELECT jsonb_array_length(memory.build_context(:'cid', 1000)->'messages') AS window_messages;
SELECT memory.add_message(:'cid', 'user', 'let me in');
SELECT memory.rewind_conversation(:'cid', 1);
SELECT memory.create_share_link(:'cid');
UPDATE memory.conversations SET title = 'mine' WHERE id = :'cid';
DELETE FROM memory.conversation_messages WHERE conversation_id = :'cid';
SELECT memory.can_read(:'cid') AS can_read, memory.can_write(:'cid') AS can_write, memory.can_manage(:'cid') AS can_manage;

-- the editor appends, and may not manage
SET memory.user_id = :'editor';
SELECT seq FROM memory.add_message(:'cid', 'user', 'Book the room too');
SELECT memory.share_conversation(:'cid', :'viewer', 'editor');
SELECT memory.archive_conversation(:'cid');
SELECT memory.can_read(:'cid') AS can_read, memory.can_write(:'cid') AS can_write, memory.can_manage(:'cid') AS can_manage;

-- unshare: the viewer no longer sees it
SET memory.user_id = :'owner';
SELECT memory.unshare_conversation(:'cid', :'viewer');
SET memory.user_id = :'viewer';
SELECT count(*) AS visible FROM memory.conversations;
SELECT memory.export_conversation(:'cid');

-- share links: up to a seq, for anyone with the token; wrong tokens all fail alike
SET memory.user_id = :'owner';
SELECT memory.create_share_link(:'cid', up_to_seq => 3) AS token \gset
SELECT memory.create_share_link(:'cid', up_to_seq => 9);
SELECT memory.create_share_link(:'cid', now() - interval '1 minute');
SELECT up_to_seq, expires_at IS NULL AS no_expiry, revoked_at IS NULL AS active FROM memory.list_share_links(:'cid');
RESET memory.user_id;
SELECT d->'conversation'->>'message_count' AS messages, jsonb_path_query_array(d, '$.messages[*].role') AS roles
  FROM memory.get_shared_conversation(:'token') AS d;
SELECT memory.get_shared_conversation('mxs_0000');
SELECT memory.get_shared_conversation(NULL);
SET memory.user_id = :'owner';
SELECT memory.revoke_share_link(id) FROM memory.list_share_links(:'cid');
RESET memory.user_id;
SELECT memory.get_shared_conversation(:'token');

-- archive: hidden from the list by default, no new messages
SET memory.user_id = :'owner';
SELECT archived_at IS NOT NULL AS archived FROM memory.archive_conversation(:'cid');
SELECT count(*) AS listed FROM memory.list_conversations();
SELECT count(*) AS listed_archived FROM memory.list_conversations(archived => true);
SELECT memory.add_message(:'cid', 'user', 'anyone?');
SELECT archived_at IS NULL AS open FROM memory.unarchive_conversation(:'cid');

-- transfer of ownership: the owner offers, the recipient accepts; the previous owner stays as an editor
SET memory.user_id = :'editor';
SELECT memory.transfer_conversation(:'cid', :'editor');
SET memory.user_id = :'owner';
SELECT memory.transfer_conversation(:'cid', :'owner');
SELECT user_id = :'owner' AS still_the_owners FROM memory.transfer_conversation(:'cid', :'editor');
SELECT memory.accept_transfer(:'cid');
SET memory.user_id = :'editor';
SELECT title, message_count, members FROM memory.list_transfer_offers();
SELECT user_id = :'editor' AS editor_owns FROM memory.accept_transfer(:'cid');
SELECT user_id, role FROM memory.list_members(:'cid');
SELECT user_id = :'editor' AS offered FROM memory.transfer_conversation(:'cid', :'owner');
SET memory.user_id = :'owner';
SELECT user_id = :'owner' AS owner_owns_again FROM memory.accept_transfer(:'cid');
SELECT memory.unshare_conversation(:'cid', :'editor') AS previous_owner_removed;
SELECT role AS shared_again FROM memory.share_conversation(:'cid', :'editor', 'editor');

-- retention: the setting (off here) or the agent's own period, whichever is shorter (the setting is a
-- ceiling: an agent's 0 follows it); a preview of what would go
INSERT INTO memory.agents (id, name, retention_days) VALUES ('a0000000-0000-0000-0000-00000000a0d1', 'short-lived', 7);
SELECT (memory.create_conversation('a0000000-0000-0000-0000-00000000a0d1', 'old')).id IS NOT NULL AS created;
SELECT count(*) AS due_now FROM memory.retention_preview();
RESET ROLE;
SET session_replication_role = replica;  -- back-date past the update trigger
UPDATE memory.conversations SET updated_at = now() - interval '10 days' - CASE title WHEN 'old' THEN interval '1 hour' ELSE interval '0' END
 WHERE title IN ('old', 'Team plan');
RESET session_replication_role;
SET ROLE regress_app;
SELECT title, retention_days FROM memory.retention_preview();
SELECT title, retention_days FROM memory.retention_preview(30);
SELECT title, retention_days FROM memory.retention_preview(9);
SELECT memory.retention_preview(0);
SELECT retention_days AS follows_the_operator FROM memory.update_agent('a0000000-0000-0000-0000-00000000a0d1', retention_days => 0);
SELECT title, retention_days FROM memory.retention_preview(9);

-- analytics: the caller's own figures
SELECT sum(messages) AS messages, sum(tool_calls) AS tool_calls FROM memory.usage_daily;
SELECT tool, calls, results, without_result FROM memory.tool_usage;
SELECT title, messages FROM memory.conversation_activity;

-- erasure: not for ordinary roles; the superuser removes everything of the owner
SELECT memory.erase_user(:'owner');
RESET ROLE;
SELECT memory.erase_user(:'owner');
SELECT count(*) AS left_over FROM memory.conversations WHERE id = :'cid';
