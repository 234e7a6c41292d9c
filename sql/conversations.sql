-- Conversation functions. SECURITY INVOKER except listing (see there): RLS decides what each
-- caller sees, and someone else's conversation is reported exactly like one that does not exist.

-- template_id: start with the messages of one of the caller's templates (see templates.sql); then
-- agent_id may be NULL (the template's agent).
CREATE OR REPLACE FUNCTION memory.create_conversation(
    agent_id uuid,
    title text DEFAULT NULL,
    metadata jsonb DEFAULT '{}',
    encoding text DEFAULT NULL,
    template_id uuid DEFAULT NULL
) RETURNS memory.conversations
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.conversations;
    v_user uuid := memory.current_user_id();
    v_template_agent uuid;
    v_template_messages jsonb;
BEGIN
    IF create_conversation.template_id IS NOT NULL THEN
        SELECT t.agent_id, t.messages INTO v_template_agent, v_template_messages
          FROM memory.conversation_templates t WHERE t.id = create_conversation.template_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'template % does not exist', create_conversation.template_id USING ERRCODE = 'no_data_found';
        END IF;
    END IF;
    IF coalesce(create_conversation.agent_id, v_template_agent) IS NULL THEN
        RAISE EXCEPTION 'agent_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_user := memory._identity();
    INSERT INTO memory.conversations AS c (agent_id, user_id, title, metadata, encoding)
    VALUES (coalesce(create_conversation.agent_id, v_template_agent), v_user, create_conversation.title, coalesce(create_conversation.metadata, '{}'), create_conversation.encoding)
    RETURNING c.* INTO v_row;
    IF create_conversation.template_id IS NOT NULL THEN
        PERFORM memory._append_all(v_row.id, v_template_messages, 'template');
        SELECT c.* INTO v_row FROM memory.conversations c WHERE c.id = v_row.id;
    END IF;
    RETURN v_row;
END $$;

-- idempotency_key: a client's key for this append. A retry with the same key and the same message
-- returns the message stored the first time instead of appending it again; the same key with a
-- different message is an error (23505).
CREATE OR REPLACE FUNCTION memory.add_message(
    conversation_id uuid,
    role text,
    content text,
    tool_calls jsonb DEFAULT NULL,
    name text DEFAULT NULL,
    tool_call_id text DEFAULT NULL,
    metadata jsonb DEFAULT NULL,
    idempotency_key text DEFAULT NULL
) RETURNS memory.conversation_messages
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.conversation_messages;
BEGIN
    -- seq and token_count are set by the triggers
    INSERT INTO memory.conversation_messages AS m
        (conversation_id, role, content, tool_calls, name, tool_call_id, metadata, idempotency_key, seq, token_count)
    VALUES (add_message.conversation_id, add_message.role, add_message.content, add_message.tool_calls, add_message.name, add_message.tool_call_id, add_message.metadata, add_message.idempotency_key, 0, 0)
    RETURNING m.* INTO v_row;
    IF NOT FOUND THEN  -- the insert trigger found this append already stored under the key
        SELECT m.* INTO v_row FROM memory.conversation_messages m
         WHERE m.conversation_id = add_message.conversation_id AND m.idempotency_key = add_message.idempotency_key;
    END IF;
    RETURN v_row;
END $$;

CREATE OR REPLACE FUNCTION memory.get_messages(
    conversation_id uuid,
    "limit" integer DEFAULT 50,
    before_seq bigint DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql STABLE
-- walk the (conversation_id, seq) index backwards and stop after the page, even when the
-- statistics think conversations are small (see build_context)
SET search_path = pg_catalog, pg_temp SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
AS $$
DECLARE
    v_result jsonb;
BEGIN
    IF get_messages.conversation_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF get_messages."limit" IS NULL OR get_messages."limit" < 1 OR get_messages."limit" > 1000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 1000, got %', coalesce(get_messages."limit"::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM memory.conversations c WHERE c.id = get_messages.conversation_id) THEN
        RAISE EXCEPTION 'conversation % does not exist', get_messages.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    -- One row past the page tells whether there is more. A page also ends before it would pass
    -- 64 MB of text (always at least one message), so that it fits in one jsonb value.
    WITH page AS (
        SELECT m.*, row_number() OVER (ORDER BY m.seq DESC) AS rn,
               sum(octet_length(m.content) + coalesce(octet_length(m.tool_calls::text), 0)) OVER (ORDER BY m.seq DESC) AS bytes
          FROM (SELECT * FROM memory.conversation_messages m
                 WHERE m.conversation_id = get_messages.conversation_id AND (get_messages.before_seq IS NULL OR m.seq < get_messages.before_seq)
                 ORDER BY m.seq DESC
                 LIMIT get_messages."limit" + 1) m
    ), kept AS (
        SELECT p.*, (p.rn <= get_messages."limit" AND (p.rn = 1 OR p.bytes <= 67108864)) AS on_page FROM page p
    )
    SELECT jsonb_build_object(
               'messages', coalesce(jsonb_agg(to_jsonb(k) - 'rn' - 'bytes' - 'on_page' - 'conversation_id' - 'search_vector' ORDER BY k.seq)
                                    FILTER (WHERE k.on_page), '[]'::jsonb),
               'has_more', bool_or(NOT k.on_page),
               'next_before_seq', CASE WHEN bool_or(NOT k.on_page) THEN min(k.seq) FILTER (WHERE k.on_page) END)
      INTO v_result
      FROM kept k;
    v_result := jsonb_set(v_result, '{has_more}', to_jsonb(coalesce((v_result->>'has_more')::boolean, false)));
    RETURN v_result;
END $$;

-- The caller's conversations and those shared with it, newest updated first. Filters: agent,
-- metadata containment, a title substring (case-insensitive, taken literally), updated before /
-- after, archived (false: hide archived ones, the default; true: only those; NULL: both), shared
-- (false: own ones only; true: shared ones only; NULL: both). Next page: updated_before => the last
-- row's updated_at, before_id => its id.
-- As the owner: its two sources are the read rule itself (the caller's own conversations, and
-- those memory._shared_with lists), and under RLS the planner loses the index order of the first
-- (a user with 30,000 conversations had all of them sorted for a page) and checks every shared row
-- again against the caller's whole list of shared conversations (a cost that grows with the
-- square of that list: seconds for 20,000 shares).
CREATE OR REPLACE FUNCTION memory._list_conversations(
    agent_id uuid, "limit" integer, metadata jsonb, title text, updated_before timestamptz, updated_after timestamptz,
    before_id uuid, archived boolean, shared boolean
) RETURNS SETOF memory.listed_conversation
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- the filters, written once for both sources below
    v_filter constant text := $f$
           AND ($1 IS NULL OR c.agent_id = $1)
           AND ($3 IS NULL OR c.metadata @> $3)
           AND ($4 IS NULL OR c.title ILIKE '%' || replace(replace(replace($4, '\', '\\'), '%', '\%'), '_', '\_') || '%')
           AND ($5 IS NULL OR c.updated_at < $5 OR (c.updated_at = $5 AND $7 IS NOT NULL AND c.id > $7))
           AND ($6 IS NULL OR c.updated_at > $6)
           AND ($8 IS NULL OR (c.archived_at IS NOT NULL) = $8)
         ORDER BY c.updated_at DESC, c.id
         LIMIT $2$f$;
    v_columns constant text := 'c.id, c.agent_id, c.user_id, c.title, c.encoding, c.total_tokens, c.message_count, '
                               'c.last_seq, c.metadata, c.created_at, c.updated_at, c.archived_at';
BEGIN
    IF _list_conversations."limit" IS NULL OR _list_conversations."limit" < 1 OR _list_conversations."limit" > 1000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 1000, got %', coalesce(_list_conversations."limit"::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF _list_conversations.title IS NOT NULL AND length(_list_conversations.title) > 200 THEN
        RAISE EXCEPTION 'title filter longer than 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF _list_conversations.before_id IS NOT NULL AND _list_conversations.updated_before IS NULL THEN
        RAISE EXCEPTION 'before_id needs updated_before (the last row''s updated_at)' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Two sources, each cut at the page size, merged: the caller's own conversations (in the order
    -- of the index on user_id, updated_at) and those shared with it. The columns are named: the
    -- distributed layout adds its own to conversations.
    RETURN QUERY EXECUTE format($q$
        SELECT x.* FROM (
            (SELECT %2$s, 'owner'::text AS access FROM memory.conversations c
              WHERE $9 IS NOT TRUE AND c.user_id = $10 %1$s)
            UNION ALL
            (SELECT %2$s, m.role FROM unnest(memory._shared_with($10, false)) AS s(id)
               JOIN memory.conversations c ON c.id = s.id
               JOIN memory.conversation_members m ON m.conversation_id = s.id AND m.user_id = $10
              WHERE $9 IS NOT FALSE %1$s)
        ) x
        ORDER BY x.updated_at DESC, x.id
        LIMIT $2$q$, v_filter, v_columns)
    USING _list_conversations.agent_id, _list_conversations."limit", _list_conversations.metadata, _list_conversations.title, _list_conversations.updated_before, _list_conversations.updated_after, _list_conversations.before_id, _list_conversations.archived, _list_conversations.shared, memory.current_user_id();
END $$;

CREATE OR REPLACE FUNCTION memory.list_conversations(
    agent_id uuid DEFAULT NULL,
    "limit" integer DEFAULT 20,
    metadata jsonb DEFAULT NULL,
    title text DEFAULT NULL,
    updated_before timestamptz DEFAULT NULL,
    updated_after timestamptz DEFAULT NULL,
    before_id uuid DEFAULT NULL,
    archived boolean DEFAULT false,
    shared boolean DEFAULT NULL
) RETURNS SETOF memory.listed_conversation
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._list_conversations($1, $2, $3, $4, $5, $6, $7, $8, $9);
$$;

CREATE OR REPLACE FUNCTION memory.delete_conversation(id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (DELETE FROM memory.conversations c WHERE c.id = delete_conversation.id RETURNING 1)
    SELECT count(*) > 0 FROM gone;
$$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._list_conversations(uuid, integer, jsonb, text, timestamp with time zone, timestamp with time zone, uuid, boolean, boolean)
FROM PUBLIC;
