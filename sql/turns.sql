-- Chat turns and reply jobs: memory.chat and continue_chat answer in the caller's transaction
-- (the Rust half is memory._chat_answer); request_reply and auto_reply leave the answer to the
-- worker.

-- Reply jobs -----------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION memory._request_reply(p_conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_owner uuid;
BEGIN
    PERFORM memory._require(p_conversation_id, 'write');
    SELECT c.user_id INTO v_owner FROM memory.conversations c WHERE c.id = p_conversation_id;
    PERFORM memory._check_token_quota_of(coalesce(memory.current_user_id(), v_owner));
    RETURN memory._enqueue_job('reply', p_conversation_id);
END $$;

CREATE OR REPLACE FUNCTION memory.request_reply(conversation_id uuid) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF request_reply.conversation_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN memory._request_reply(request_reply.conversation_id);
END $$;

-- A reply job of a conversation the caller may read, or NULL.
CREATE OR REPLACE FUNCTION memory._reply_status(p_job_id bigint) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('id', j.id, 'conversation_id', j.conversation_id, 'status', j.status,
                              'attempts', j.attempts, 'last_error', j.last_error, 'run_after', j.run_after,
                              'message_id', j.payload->'message_id', 'created_at', j.created_at, 'updated_at', j.updated_at)
      FROM memory.jobs j
     WHERE j.id = p_job_id AND j.kind = 'reply' AND memory.can_read(j.conversation_id);
$$;

CREATE OR REPLACE FUNCTION memory.reply_status(job_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_status jsonb := memory._reply_status(reply_status.job_id);
BEGIN
    IF v_status IS NULL THEN
        RAISE EXCEPTION 'reply job % does not exist', coalesce(reply_status.job_id::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_status;
END $$;

-- Chat turns -----------------------------------------------------------------------------------
-- The synchronous turn: appends the user's message, then memory._chat_answer (the library) builds
-- the agent's window, calls the LLM, stores the answer and records the call. In the caller's
-- transaction: on any failure nothing is written.
CREATE OR REPLACE FUNCTION memory._start_turn(p_conversation_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_conversation_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF pg_is_in_recovery() OR current_setting('transaction_read_only')::boolean THEN
        RAISE EXCEPTION 'memory.chat writes the turn''s messages: it cannot run in a read-only transaction or on a standby'
            USING ERRCODE = 'read_only_sql_transaction';
    END IF;
    PERFORM memory._raise_error(memory._caller_token_quota_error());
END $$;

CREATE OR REPLACE FUNCTION memory._finish_turn(p_answer jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._raise_error(p_answer->'error');
    RETURN p_answer;
END $$;

CREATE OR REPLACE FUNCTION memory.chat(conversation_id uuid, content text, metadata jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._start_turn(chat.conversation_id);
    IF chat.content IS NULL THEN
        RAISE EXCEPTION 'content must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM memory._suppress_auto_reply();
    PERFORM memory.add_message(chat.conversation_id, 'user', chat.content, metadata => chat.metadata);
    RETURN memory._finish_turn(memory._chat_answer(chat.conversation_id));
END $$;

-- The same turn without a new user message: after the application appended the results of the
-- previous answer's tool calls. Whether the caller may write the answer is checked before the LLM
-- is called (memory.chat's user message checks it the same way).
CREATE OR REPLACE FUNCTION memory.continue_chat(conversation_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._start_turn(continue_chat.conversation_id);
    PERFORM memory._require(continue_chat.conversation_id, 'write');
    IF (SELECT c.archived_at FROM memory.conversations c WHERE c.id = continue_chat.conversation_id) IS NOT NULL THEN
        RAISE EXCEPTION 'conversation % is archived', continue_chat.conversation_id
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'memory.unarchive_conversation(id) reopens it.';
    END IF;
    RETURN memory._finish_turn(memory._chat_answer(continue_chat.conversation_id));
END $$;

-- The Rust half of a turn reads the window like build_context, so its plans are pinned to the
-- index the same way (see context.sql), and its search_path like every other function's.
ALTER FUNCTION memory._chat_answer(uuid)
    SET enable_sort = off
    SET enable_bitmapscan = off
    SET enable_seqscan = off;

ALTER FUNCTION memory._chat_answer(uuid) SET search_path = pg_catalog, pg_temp;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._request_reply(uuid),
    memory._reply_status(bigint)
FROM PUBLIC;
