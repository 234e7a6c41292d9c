-- Erasure: everything of one user, in one call, for operators (superusers and BYPASSRLS roles).

-- ---- erasure -----------------------------------------------------------------------------------

-- What hangs on conversations from the tables outside their shard group — their jobs, stored
-- branch messages and vectors, and facts' link to them — removed with the conversations by whoever
-- deletes them for users (erasure here; on the distributed layout, delete_conversation and
-- retention too) rather than by the foreign keys' cascade alone: the distributed layout drops those
-- keys (docs/scaling.md). On one server the cascade has done it already, and this finds nothing.
CREATE OR REPLACE FUNCTION memory._forget_conversations(ids uuid[]) RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM memory.jobs j WHERE j.conversation_id = ANY ($1);
    DELETE FROM memory.branch_messages b WHERE b.conversation_id = ANY ($1);
    DELETE FROM memory.message_embeddings e WHERE e.conversation_id = ANY ($1);
    UPDATE memory.facts f SET conversation_id = NULL WHERE f.conversation_id = ANY ($1);
$$;

-- Removes everything of one user, in one transaction: its conversations (with their messages,
-- summaries, jobs, members, share links and transfer offers), the messages it wrote in others'
-- conversations (as any deletion of messages: a call takes its results along, and build_context
-- leaves out results whose call is gone), its memberships and the offers made to it, its agents,
-- templates, facts (with their vectors), LLM call records, usage counters and queue state. For
-- superusers and roles that bypass RLS (Supabase's service_role) only; it reads every message
-- once (messages have no index by author). Returns the rows removed per table.
CREATE OR REPLACE FUNCTION memory._erase_user(user_id uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_counts jsonb := '{}';
    v_n      bigint;
    v_table  text;
    v_ids    uuid[];
BEGIN
    IF NOT memory._caller_bypasses_rls() THEN
        RAISE EXCEPTION 'memory.erase_user is for superusers and roles that bypass row-level security'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF _erase_user.user_id IS NULL THEN
        RAISE EXCEPTION 'user_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- what the user wrote elsewhere, then what the conversations' cascade takes, counted first
    DELETE FROM memory.conversation_messages m USING memory.conversations c
     WHERE m.author_id = _erase_user.user_id AND c.id = m.conversation_id AND c.user_id <> _erase_user.user_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('authored_messages', v_n);
    -- and in others' inactive branches (counted with the authored messages)
    DELETE FROM memory.branch_messages b USING memory.conversations c
     WHERE b.message->>'author_id' = _erase_user.user_id::text AND c.id = b.conversation_id AND c.user_id <> _erase_user.user_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('authored_messages', (v_counts->>'authored_messages')::bigint + v_n);
    SELECT count(*) INTO v_n FROM memory.conversation_messages m JOIN memory.conversations c ON c.id = m.conversation_id WHERE c.user_id = _erase_user.user_id;
    v_counts := v_counts || jsonb_build_object('conversation_messages', v_n);
    SELECT count(*) INTO v_n FROM memory.conversation_summaries s JOIN memory.conversations c ON c.id = s.conversation_id WHERE c.user_id = _erase_user.user_id;
    v_counts := v_counts || jsonb_build_object('conversation_summaries', v_n);
    SELECT count(*) INTO v_n FROM memory.share_links l JOIN memory.conversations c ON c.id = l.conversation_id WHERE c.user_id = _erase_user.user_id;
    v_counts := v_counts || jsonb_build_object('share_links', v_n);
    SELECT count(*) INTO v_n FROM memory.conversation_members m WHERE m.owner_id = _erase_user.user_id OR m.user_id = _erase_user.user_id;
    v_counts := v_counts || jsonb_build_object('conversation_members', v_n);
    SELECT count(*) INTO v_n FROM memory.jobs j
     WHERE j.user_id = _erase_user.user_id OR j.conversation_id IN (SELECT c.id FROM memory.conversations c WHERE c.user_id = _erase_user.user_id);
    v_counts := v_counts || jsonb_build_object('jobs', v_n);

    SELECT count(*) INTO v_n FROM memory.conversation_transfers t WHERE t.from_user_id = _erase_user.user_id OR t.to_user_id = _erase_user.user_id;
    v_counts := v_counts || jsonb_build_object('conversation_transfers', v_n);

    DELETE FROM memory.conversation_members m WHERE m.user_id = _erase_user.user_id;
    DELETE FROM memory.conversation_transfers t WHERE t.to_user_id = _erase_user.user_id;
    DELETE FROM memory.jobs j WHERE j.user_id = _erase_user.user_id;
    SELECT coalesce(array_agg(c.id), '{}') INTO v_ids FROM memory.conversations c WHERE c.user_id = _erase_user.user_id;
    PERFORM memory._forget_conversations(v_ids);
    DELETE FROM memory.conversations c WHERE c.user_id = _erase_user.user_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('conversations', v_n);
    -- the tables keyed by the user alone
    FOREACH v_table IN ARRAY ARRAY['queue_turns', 'conversation_templates', 'llm_calls', 'user_usage', 'facts', 'agents'] LOOP
        EXECUTE format('DELETE FROM memory.%I t WHERE t.user_id = $1', v_table) USING _erase_user.user_id;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_counts := v_counts || jsonb_build_object(v_table, v_n);
    END LOOP;
    RETURN v_counts;
END $$;

CREATE OR REPLACE FUNCTION memory.erase_user(user_id uuid) RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._erase_user($1);
$$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._forget_conversations(uuid[]),
    memory._erase_user(uuid)
FROM PUBLIC;
