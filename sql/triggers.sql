-- Triggers that make a plain INSERT complete (SPEC §4.2): seq, token_count, conversation
-- totals, updated_at, tool-call validation. They run as the caller, so RLS applies inside.

CREATE FUNCTION memory._conversation_before_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.encoding := memory.resolve_encoding(coalesce(NEW.encoding, memory.default_encoding()));
    -- counters belong to the triggers, whatever the INSERT said
    NEW.total_tokens := 0;
    NEW.message_count := 0;
    NEW.last_seq := 0;
    NEW.metadata := coalesce(NEW.metadata, '{}');
    NEW.created_at := coalesce(NEW.created_at, now());
    NEW.updated_at := NEW.created_at;
    RETURN NEW;
END $$;

CREATE TRIGGER conversations_before_insert BEFORE INSERT ON memory.conversations
    FOR EACH ROW EXECUTE FUNCTION memory._conversation_before_insert();

CREATE FUNCTION memory._conversation_before_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION 'the id of a conversation cannot change' USING ERRCODE = 'feature_not_supported';
    END IF;
    IF NEW.encoding IS DISTINCT FROM OLD.encoding THEN
        IF OLD.message_count > 0 THEN
            RAISE EXCEPTION 'cannot change the encoding of conversation % : its % messages were counted in %',
                OLD.id, OLD.message_count, OLD.encoding USING ERRCODE = 'invalid_parameter_value';
        END IF;
        NEW.encoding := memory.resolve_encoding(NEW.encoding);
    END IF;
    -- Only memory_ext's own triggers (one level down) maintain the counters.
    IF pg_trigger_depth() = 1 THEN
        IF (NEW.total_tokens, NEW.message_count, NEW.last_seq) IS DISTINCT FROM (OLD.total_tokens, OLD.message_count, OLD.last_seq) THEN
            RAISE EXCEPTION 'total_tokens, message_count and last_seq are maintained by memory_ext'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER conversations_before_update BEFORE UPDATE ON memory.conversations
    FOR EACH ROW EXECUTE FUNCTION memory._conversation_before_update();

-- The first of p_keys (see memory._tool_keys) that an earlier message of the conversation holds,
-- or NULL. SECURITY DEFINER so that the GIN index serves the lookup: under RLS the planner may
-- not use the non-leakproof && operator as an index condition and would filter the whole table
-- instead. The caller proves it may see the conversation with its created_at (see
-- summaries.sql), and the keys name that conversation only.
CREATE FUNCTION memory._tool_key_taken(p_conversation_id uuid, p_created_at timestamptz, p_keys text[])
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_found text;
BEGIN
    PERFORM memory._check_visibility_proof(p_conversation_id, p_created_at);
    IF EXISTS (SELECT 1 FROM unnest(p_keys) k WHERE NOT starts_with(k, p_conversation_id::text || '/')) THEN
        RAISE EXCEPTION 'tool keys must name conversation %', p_conversation_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT k INTO v_found
      FROM memory.conversation_messages m, unnest(p_keys) AS k
     WHERE (m.tool_calls IS NOT NULL OR m.tool_call_id IS NOT NULL)
       AND memory._tool_keys(m.conversation_id, m.tool_calls, m.tool_call_id) && p_keys
       AND k = ANY (memory._tool_keys(m.conversation_id, m.tool_calls, m.tool_call_id))
     LIMIT 1;
    RETURN v_found;
END $$;

CREATE FUNCTION memory._message_before_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_encoding text;
    v_locked   text;
    v_clash    text;
    v_total    bigint;
    v_created  timestamptz;
    v_seq      bigint;
    v_threshold bigint := coalesce(current_setting('memory.summarize_threshold', true), '6000')::bigint;
BEGIN
    IF NEW.conversation_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.encoding INTO v_encoding FROM memory.conversations c WHERE c.id = NEW.conversation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', NEW.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    -- validates role, name, tool_calls and tool_call_id, and counts what build_context will emit
    NEW.token_count := memory.message_tokens(NEW.role, NEW.content, NEW.tool_calls, NEW.name, v_encoding, NEW.tool_call_id);

    -- Taking the conversation's row lock serialises appends to it: seq has no gaps or duplicates.
    UPDATE memory.conversations c
       SET message_count = c.message_count + 1,
           total_tokens = c.total_tokens + NEW.token_count,
           last_seq = c.last_seq + 1,
           updated_at = now()
     WHERE c.id = NEW.conversation_id
    RETURNING c.encoding, c.total_tokens, c.created_at, c.last_seq INTO v_locked, v_total, v_created, v_seq;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', NEW.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_locked IS DISTINCT FROM v_encoding THEN
        RAISE EXCEPTION 'the encoding of conversation % changed while adding a message; retry', NEW.conversation_id
            USING ERRCODE = 'serialization_failure';
    END IF;

    IF NEW.tool_calls IS NOT NULL THEN
        v_clash := memory._tool_key_taken(NEW.conversation_id, v_created,
            ARRAY(SELECT NEW.conversation_id::text || kind || (call->>'id')
                    FROM jsonb_array_elements(NEW.tool_calls) AS call, unnest(ARRAY['/c/', '/g/']) AS kind));
        IF v_clash IS NOT NULL THEN
            RAISE EXCEPTION 'duplicate tool call id "%": an earlier message of this conversation already made that call', substr(v_clash, 40)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF NEW.role = 'tool' THEN
        IF memory._tool_key_taken(NEW.conversation_id, v_created, ARRAY[NEW.conversation_id::text || '/c/' || NEW.tool_call_id]) IS NULL THEN
            RAISE EXCEPTION 'tool_call_id "%" matches no earlier assistant tool call in this conversation', NEW.tool_call_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF memory._tool_key_taken(NEW.conversation_id, v_created, ARRAY[NEW.conversation_id::text || '/r/' || NEW.tool_call_id]) IS NOT NULL THEN
            RAISE EXCEPTION 'tool call "%" already has a result', NEW.tool_call_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    NEW.seq := v_seq;

    -- Auto-summary: O(1) — the running total, then the newest summary's coverage.
    IF v_total > v_threshold AND memory._uncovered_tokens(NEW.conversation_id, v_total) > v_threshold THEN
        PERFORM memory._enqueue_summary(NEW.conversation_id, v_created);
    END IF;
    NEW.created_at := coalesce(NEW.created_at, now());
    RETURN NEW;
END $$;

CREATE TRIGGER messages_before_insert BEFORE INSERT ON memory.conversation_messages
    FOR EACH ROW EXECUTE FUNCTION memory._message_before_insert();

CREATE FUNCTION memory._message_before_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (NEW.id, NEW.conversation_id, NEW.seq, NEW.role, NEW.content, NEW.name, NEW.tool_calls::text,
        NEW.tool_call_id, NEW.token_count, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.conversation_id, OLD.seq, OLD.role, OLD.content, OLD.name, OLD.tool_calls::text,
        OLD.tool_call_id, OLD.token_count, OLD.created_at) THEN
        RAISE EXCEPTION 'messages are append-only: only metadata can be updated'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'add a new message, or delete the conversation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER messages_before_update BEFORE UPDATE ON memory.conversation_messages
    FOR EACH ROW EXECUTE FUNCTION memory._message_before_update();

-- One statement-level pass per DELETE (including the cascade of a deleted conversation).
CREATE FUNCTION memory._messages_after_delete() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE memory.conversations c
       SET message_count = c.message_count - d.n,
           total_tokens = c.total_tokens - d.t
      FROM (SELECT g.conversation_id, count(*) AS n, sum(g.token_count) AS t
              FROM gone g GROUP BY g.conversation_id) d
     WHERE c.id = d.conversation_id;
    -- A deleted call takes its results with it: a result without its call is not a valid message.
    -- (Results carry no calls, so the nested DELETE's own pass stops here.)
    IF EXISTS (SELECT 1 FROM gone g WHERE g.tool_calls IS NOT NULL) THEN
        DELETE FROM memory.conversation_messages m
         USING gone g, jsonb_array_elements(g.tool_calls) AS call
         WHERE g.tool_calls IS NOT NULL
           AND m.conversation_id = g.conversation_id
           AND m.tool_call_id = call->>'id';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_after_delete AFTER DELETE ON memory.conversation_messages
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION memory._messages_after_delete();
