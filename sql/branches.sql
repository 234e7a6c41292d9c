-- Branches: editing a message or regenerating an answer keeps what it replaces.
--
-- A conversation is a tree of messages. Its active branch — the path from the first message to
-- the active leaf — is what memory.conversation_messages holds, so build_context, summaries,
-- search, export, sharing and the counters all follow it unchanged. The messages of the other
-- branches wait in memory.branch_messages (the row as it was, and the message before it on its
-- branch). edit_message and regenerate move the active path's tail there and append the new
-- version; switch_branch moves the active tail there and brings another path back, with its
-- messages' ids, contents and times. seq is never reused (a message brought back gets a new one
-- after every seq given so far), so the active path's seqs increase from its first message to
-- its leaf.

-- Moves the active messages after p_keep_seq (0: all of them) to memory.branch_messages, each
-- with the message before it on the active path, and removes them from the active branch as
-- rewind_conversation does (pending jobs cancelled, summaries past the cut dropped, 22023 when the
-- cut would separate a tool call from its results). Executable by the callers of edit_message,
-- regenerate and switch_branch (invoker functions): it checks that the caller owns the
-- conversation. Returns how many messages moved.
CREATE OR REPLACE FUNCTION memory._branch_off(p_conversation_id uuid, p_keep_seq bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_moved integer;
BEGIN
    PERFORM memory._require(p_conversation_id, 'manage');
    PERFORM 1 FROM memory.conversations c WHERE c.id = p_conversation_id FOR NO KEY UPDATE;
    INSERT INTO memory.branch_messages (id, conversation_id, parent_id, seq, message)
    SELECT t.id, t.conversation_id, t.parent_id, t.seq, t.message FROM (
        SELECT m.id, m.conversation_id, m.seq, to_jsonb(m) - 'search_vector' AS message,
               lag(m.id) OVER (ORDER BY m.seq) AS parent_id
          FROM memory.conversation_messages m
         WHERE m.conversation_id = p_conversation_id
           AND m.seq >= coalesce((SELECT max(k.seq) FROM memory.conversation_messages k
                                   WHERE k.conversation_id = p_conversation_id AND k.seq <= p_keep_seq), 0)) t
     WHERE t.seq > p_keep_seq;
    GET DIAGNOSTICS v_moved = ROW_COUNT;
    PERFORM memory._rewind_conversation(p_conversation_id, p_keep_seq);
    RETURN v_moved;
END $$;

-- Checks that the caller owns the conversation and locks it (appends, rewinds and other branch
-- moves wait) before a branch move reads the tree.
CREATE OR REPLACE FUNCTION memory._lock_for_branching(p_conversation_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._require(p_conversation_id, 'manage');
    PERFORM 1 FROM memory.conversations c WHERE c.id = p_conversation_id FOR NO KEY UPDATE;
END $$;

-- Replaces a message of the active branch by a new version ("edit and resend"): the message and
-- everything after it move to a branch of their own, and the new version is appended as the
-- caller (validated, counted and limited like any append; an agent with auto_reply answers it).
-- Only user messages and plain assistant answers can be edited. Owner only, like rewinding.
-- Returns the new message.
CREATE OR REPLACE FUNCTION memory.edit_message(message_id uuid, content text) RETURNS memory.conversation_messages
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_old  memory.conversation_messages;
    v_prev bigint;
    v_new  memory.conversation_messages;
BEGIN
    IF edit_message.message_id IS NULL OR edit_message.content IS NULL THEN
        RAISE EXCEPTION 'message_id and content must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT m.* INTO v_old FROM memory.conversation_messages m WHERE m.id = edit_message.message_id;
    IF FOUND THEN
        PERFORM memory._lock_for_branching(v_old.conversation_id);
        -- still active once the conversation is locked?
        SELECT m.* INTO v_old FROM memory.conversation_messages m WHERE m.id = edit_message.message_id;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % does not exist in an active branch', edit_message.message_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_old.role NOT IN ('user', 'assistant') OR v_old.tool_calls IS NOT NULL THEN
        RAISE EXCEPTION 'only user messages and plain assistant answers can be edited, not a % message%', v_old.role,
            CASE WHEN v_old.tool_calls IS NOT NULL THEN ' with tool calls' ELSE '' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT coalesce(max(m.seq), 0) INTO v_prev FROM memory.conversation_messages m
     WHERE m.conversation_id = v_old.conversation_id AND m.seq < v_old.seq;
    PERFORM memory._branch_off(v_old.conversation_id, v_prev);
    INSERT INTO memory.conversation_messages AS m (conversation_id, role, content, name, metadata)
    VALUES (v_old.conversation_id, v_old.role, edit_message.content, v_old.name, v_old.metadata)
    RETURNING m.* INTO v_new;
    RETURN v_new;
END $$;

-- A new answer to the newest user message, as a sibling of the current one: the answer (and any
-- tool rounds after that user message) moves to a branch of its own and memory.continue_chat
-- asks the agent's LLM again, in this transaction. When the LLM fails nothing changes (the error
-- is continue_chat's). Owner only. Returns what continue_chat returns.
CREATE OR REPLACE FUNCTION memory.regenerate(conversation_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user bigint;
BEGIN
    IF regenerate.conversation_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM memory._lock_for_branching(regenerate.conversation_id);
    SELECT max(m.seq) INTO v_user FROM memory.conversation_messages m
     WHERE m.conversation_id = regenerate.conversation_id AND m.role = 'user';
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'conversation % has no user message to answer again', regenerate.conversation_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM memory._branch_off(regenerate.conversation_id, v_user);
    RETURN memory.continue_chat(regenerate.conversation_id);
END $$;

-- The path from the first message to p_leaf (a message of the conversation, active or stored),
-- first message first: `stored` says which of them wait in memory.branch_messages. Empty when
-- p_leaf is not a message of the conversation.
CREATE OR REPLACE FUNCTION memory._branch_path(p_conversation_id uuid, p_leaf uuid)
RETURNS TABLE (id uuid, seq bigint, stored boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE up AS (
        SELECT b.id, b.seq, b.parent_id FROM memory.branch_messages b
         WHERE b.conversation_id = p_conversation_id AND b.id = p_leaf
        UNION ALL
        SELECT b.id, b.seq, b.parent_id FROM up JOIN memory.branch_messages b
            ON b.conversation_id = p_conversation_id AND b.id = up.parent_id),
    -- the active message the path runs through last: p_leaf itself when it is active, else the
    -- one the stored part hangs from (none: the stored part starts the conversation)
    joint AS (
        SELECT a.seq FROM memory.conversation_messages a
         WHERE a.conversation_id = p_conversation_id
           AND a.id = CASE WHEN EXISTS (SELECT 1 FROM up) THEN (SELECT up.parent_id FROM up ORDER BY up.seq LIMIT 1)
                           ELSE p_leaf END)
    SELECT up.id, up.seq, true FROM up
    UNION ALL
    SELECT m.id, m.seq, false FROM memory.conversation_messages m, joint
     WHERE m.conversation_id = p_conversation_id AND m.seq <= joint.seq
    ORDER BY 2;
$$;

-- Makes the path that ends at message_id the active branch: the active messages after the point
-- where the two paths part move to memory.branch_messages, and the other path's messages come
-- back with their ids, contents and times (appended as the caller: counted, searchable and
-- summarized again, each with a new seq after every seq given so far; no auto-reply). A message
-- of the active branch makes the branch end there: a rewind that loses nothing. Owner only.
-- Returns {"active_leaf", "stored", "restored"}.
CREATE OR REPLACE FUNCTION memory.switch_branch(conversation_id uuid, message_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_found    boolean;
    v_anchor   bigint;
    v_back     uuid[];
    v_stored   integer;
    v_restored integer;
BEGIN
    IF switch_branch.conversation_id IS NULL OR switch_branch.message_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id and message_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM memory._lock_for_branching(switch_branch.conversation_id);
    SELECT bool_or(p.id = switch_branch.message_id), coalesce(max(p.seq) FILTER (WHERE NOT p.stored), 0),
           coalesce(array_agg(p.id ORDER BY p.seq) FILTER (WHERE p.stored), '{}')
      INTO v_found, v_anchor, v_back
      FROM memory._branch_path(switch_branch.conversation_id, switch_branch.message_id) p;
    IF v_found IS NOT TRUE THEN
        RAISE EXCEPTION 'message % is not in conversation %', switch_branch.message_id, switch_branch.conversation_id
            USING ERRCODE = 'no_data_found';
    END IF;
    v_stored := memory._branch_off(switch_branch.conversation_id, v_anchor);
    PERFORM memory._suppress_auto_reply();
    INSERT INTO memory.conversation_messages (id, conversation_id, role, content, name, tool_calls, tool_call_id,
                                              metadata, idempotency_key, created_at)
    SELECT r.id, r.conversation_id, r.role, r.content, r.name, r.tool_calls, r.tool_call_id, r.metadata,
           r.idempotency_key, r.created_at
      FROM unnest(v_back) WITH ORDINALITY AS k(id, n)
      JOIN memory.branch_messages b ON b.id = k.id
     CROSS JOIN LATERAL jsonb_populate_record(NULL::memory.conversation_messages, b.message) r
     ORDER BY k.n;
    GET DIAGNOSTICS v_restored = ROW_COUNT;
    DELETE FROM memory.branch_messages b WHERE b.id = ANY (v_back);
    RETURN jsonb_build_object('active_leaf', switch_branch.message_id, 'stored', v_stored, 'restored', v_restored);
END $$;

-- The versions at one message's place in the tree: the messages with the same parent (the one
-- before it on its path), the active one first, then oldest first. Each with `leaf_id`, the
-- newest leaf below it (switch_branch to it shows that version with what followed it), and the
-- first 200 characters of its content. Readers of the conversation may ask.
CREATE OR REPLACE FUNCTION memory.message_siblings(message_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_conversation uuid;
    v_parent       uuid;
    v_out          jsonb;
BEGIN
    SELECT m.conversation_id, (SELECT p.id FROM memory.conversation_messages p
                                WHERE p.conversation_id = m.conversation_id AND p.seq < m.seq ORDER BY p.seq DESC LIMIT 1)
      INTO v_conversation, v_parent
      FROM memory.conversation_messages m WHERE m.id = message_siblings.message_id;
    IF NOT FOUND THEN
        SELECT b.conversation_id, b.parent_id INTO v_conversation, v_parent
          FROM memory.branch_messages b WHERE b.id = message_siblings.message_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'message % does not exist', message_siblings.message_id USING ERRCODE = 'no_data_found';
        END IF;
    END IF;
    WITH RECURSIVE versions AS (
        -- the active one: the active message right after the parent
        (SELECT m.id, m.role, m.content, true AS active, m.created_at, m.seq
           FROM memory.conversation_messages m
          WHERE m.conversation_id = v_conversation
            AND m.seq > coalesce((SELECT p.seq FROM memory.conversation_messages p WHERE p.id = v_parent), 0)
            AND (v_parent IS NULL OR EXISTS (SELECT 1 FROM memory.conversation_messages p WHERE p.id = v_parent))
          ORDER BY m.seq LIMIT 1)
        UNION ALL
        SELECT b.id, b.message->>'role', b.message->>'content', false, (b.message->>'created_at')::timestamptz, b.seq
          FROM memory.branch_messages b
         WHERE b.conversation_id = v_conversation AND b.parent_id IS NOT DISTINCT FROM v_parent),
    below AS (
        SELECT v.id AS version, v.id, v.seq FROM versions v WHERE NOT v.active
        UNION ALL
        SELECT below.version, b.id, b.seq FROM below JOIN memory.branch_messages b
            ON b.conversation_id = v_conversation AND b.parent_id = below.id)
    SELECT jsonb_agg(jsonb_build_object(
               'id', v.id, 'role', v.role, 'content', left(v.content, 200), 'active', v.active, 'created_at', v.created_at,
               'leaf_id', CASE WHEN v.active
                               THEN (SELECT m.id FROM memory.conversation_messages m WHERE m.conversation_id = v_conversation
                                      ORDER BY m.seq DESC LIMIT 1)
                               ELSE (SELECT l.id FROM below l
                                      WHERE l.version = v.id
                                        AND NOT EXISTS (SELECT 1 FROM memory.branch_messages c
                                                         WHERE c.conversation_id = v_conversation AND c.parent_id = l.id)
                                      ORDER BY l.seq DESC LIMIT 1) END)
           ORDER BY v.active DESC, v.created_at, v.id)
      INTO v_out FROM versions v;
    RETURN coalesce(v_out, '[]');
END $$;

-- The conversation's branches, one per leaf of its tree (the active one first, then the newest
-- first): its leaf, how many messages its path holds, and where it parts from the active branch
-- (`parts_after_seq`: the last message they share, 0 when none) with the first message after
-- that (`first`: id, role and the first 200 characters of its content). Readers of the
-- conversation may list them.
CREATE OR REPLACE FUNCTION memory.list_branches(conversation_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_out  jsonb := '[]';
    v_leaf record;
    v_len  bigint;
    v_part bigint;
    v_fork uuid;
    v_first jsonb;
BEGIN
    PERFORM memory._require(list_branches.conversation_id, 'read');
    FOR v_leaf IN
        WITH nodes AS (
            SELECT m.id, m.seq, lag(m.id) OVER (ORDER BY m.seq) AS parent_id, false AS stored, m.created_at
              FROM memory.conversation_messages m WHERE m.conversation_id = list_branches.conversation_id
            UNION ALL
            SELECT b.id, b.seq, b.parent_id, true, (b.message->>'created_at')::timestamptz
              FROM memory.branch_messages b WHERE b.conversation_id = list_branches.conversation_id)
        SELECT n.id, n.seq, n.stored, n.created_at FROM nodes n
         WHERE NOT EXISTS (SELECT 1 FROM nodes c WHERE c.parent_id = n.id)
         ORDER BY n.stored, n.seq DESC
    LOOP
        -- the path once: its length, the last active message it shares, its first stored one
        SELECT count(*), coalesce(max(p.seq) FILTER (WHERE NOT p.stored), 0),
               (array_agg(p.id ORDER BY p.seq) FILTER (WHERE p.stored))[1]
          INTO v_len, v_part, v_fork
          FROM memory._branch_path(list_branches.conversation_id, v_leaf.id) p;
        SELECT jsonb_build_object('id', b.id, 'role', b.message->>'role', 'content', left(b.message->>'content', 200))
          INTO v_first
          FROM memory.branch_messages b WHERE b.id = v_fork;
        v_out := v_out || jsonb_build_object('leaf_id', v_leaf.id, 'leaf_seq', v_leaf.seq, 'active', NOT v_leaf.stored,
                                             'messages', v_len, 'parts_after_seq', CASE WHEN v_leaf.stored THEN v_part END,
                                             'first', v_first, 'created_at', v_leaf.created_at);
    END LOOP;
    RETURN v_out;
END $$;
