-- Templates: a conversation's messages saved under a name, to start new conversations from
-- (create_conversation's template_id). A user's own, under RLS.

-- A template is bounded like a message: all its messages and metadata together at most
-- memory.max_message_size (it is meant as a conversation's start: a prompt and a few turns).
CREATE OR REPLACE FUNCTION memory._template_before_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._check_size('a template', pg_column_size(NEW.messages) + pg_column_size(NEW.metadata)
                                             + octet_length(NEW.name));
    RETURN NEW;
END $$;

CREATE TRIGGER templates_before_write BEFORE INSERT OR UPDATE ON memory.conversation_templates
    FOR EACH ROW EXECUTE FUNCTION memory._template_before_write();

-- Saves the messages of a conversation the caller can read (up to 1000) and its agent as the
-- caller's template `name`; returns the template's id.
CREATE OR REPLACE FUNCTION memory.save_as_template(conversation_id uuid, name text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_conv memory.conversations;
    v_id   uuid;
BEGIN
    IF save_as_template.conversation_id IS NULL OR save_as_template.name IS NULL THEN
        RAISE EXCEPTION 'conversation_id and name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM memory._identity();
    SELECT c.* INTO v_conv FROM memory.conversations c WHERE c.id = save_as_template.conversation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', save_as_template.conversation_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_conv.message_count > 1000 THEN
        RAISE EXCEPTION 'a template holds at most 1000 messages; conversation % has %', save_as_template.conversation_id, v_conv.message_count
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Fork the conversation at a smaller seq and save the fork.';
    END IF;
    INSERT INTO memory.conversation_templates AS t (name, agent_id, messages)
    SELECT save_as_template.name, v_conv.agent_id, coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'role', m.role, 'content', m.content, 'name', m.name, 'tool_calls', m.tool_calls,
               'tool_call_id', m.tool_call_id, 'metadata', m.metadata)) ORDER BY m.seq), '[]')
      FROM memory.conversation_messages m WHERE m.conversation_id = save_as_template.conversation_id
    ON CONFLICT ON CONSTRAINT conversation_templates_name_key
    DO UPDATE SET agent_id = excluded.agent_id, messages = excluded.messages, created_at = now()
    RETURNING t.id INTO v_id;
    RETURN v_id;
END $$;

CREATE OR REPLACE FUNCTION memory.list_templates() RETURNS SETOF memory.conversation_templates
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.* FROM memory.conversation_templates t ORDER BY t.name, t.id;
$$;

CREATE OR REPLACE FUNCTION memory.delete_template(template_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (DELETE FROM memory.conversation_templates t WHERE t.id = delete_template.template_id RETURNING 1)
    SELECT count(*) > 0 FROM gone;
$$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._template_before_write()
FROM PUBLIC;
