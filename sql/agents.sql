-- Agents: validating a row of memory.agents, and the functions that create, change, read and
-- delete them. Which agent applies to a conversation: see tables.sql.

-- Validates an agent: tools are OpenAI function definitions with unique names; the owner and id
-- never change; sizes are bounded like messages.
CREATE OR REPLACE FUNCTION memory._agent_before_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tool jsonb;
    v_names text[] := '{}';
    v_name text;
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.id, NEW.user_id) IS DISTINCT FROM (OLD.id, OLD.user_id) THEN
        RAISE EXCEPTION 'the id and owner of an agent cannot change' USING ERRCODE = 'feature_not_supported';
    END IF;
    IF jsonb_typeof(NEW.tools) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'tools must be a JSON array of OpenAI tool definitions' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM memory._check_message_limits(
        coalesce(octet_length(NEW.system_prompt), 0) + pg_column_size(NEW.tools) + pg_column_size(NEW.metadata),
        jsonb_array_length(NEW.tools));
    FOR v_tool IN SELECT t FROM jsonb_array_elements(NEW.tools) AS t LOOP
        v_name := v_tool #>> '{function,name}';
        IF jsonb_typeof(v_tool) IS DISTINCT FROM 'object' OR v_tool->>'type' IS DISTINCT FROM 'function'
           OR jsonb_typeof(v_tool->'function') IS DISTINCT FROM 'object' THEN
            RAISE EXCEPTION 'each tool must be {"type": "function", "function": {"name": …}}, got %', memory._clip(v_tool::text)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_name IS NULL OR v_name !~ '^[a-zA-Z0-9_-]{1,64}$' THEN
            RAISE EXCEPTION 'tool name must be 1-64 letters, digits, _ or -, got %', memory._clip(coalesce(v_name, 'NULL'))
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_name = ANY (v_names) THEN
            RAISE EXCEPTION 'tool name "%" appears twice', v_name USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (v_tool->'function') ? 'parameters' AND jsonb_typeof(v_tool #> '{function,parameters}') IS DISTINCT FROM 'object' THEN
            RAISE EXCEPTION 'parameters of tool "%" must be a JSON Schema object', v_name USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (v_tool->'function') ? 'description' AND jsonb_typeof(v_tool #> '{function,description}') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'description of tool "%" must be a string', v_name USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_names := v_names || v_name;
    END LOOP;
    NEW.created_at := CASE WHEN TG_OP = 'INSERT' THEN now() ELSE OLD.created_at END;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER agents_before_write BEFORE INSERT OR UPDATE ON memory.agents
    FOR EACH ROW EXECUTE FUNCTION memory._agent_before_write();

-- Agents ---------------------------------------------------------------------------------------
-- A setting left NULL takes its column's default (tables.sql: the one place the defaults live).
CREATE OR REPLACE FUNCTION memory.create_agent(
    name text,
    system_prompt text DEFAULT NULL,
    model text DEFAULT NULL,
    tools jsonb DEFAULT NULL,
    max_context_tokens integer DEFAULT NULL,
    reply_max_tokens integer DEFAULT NULL,
    temperature real DEFAULT NULL,
    summarize_threshold integer DEFAULT NULL,
    auto_reply boolean DEFAULT NULL,
    metadata jsonb DEFAULT NULL,
    retention_days integer DEFAULT NULL
) RETURNS memory.agents
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.agents;
    v_user uuid := memory._identity();
BEGIN
    IF create_agent.name IS NULL THEN
        RAISE EXCEPTION 'name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- $5..$10: a NULL setting is written as DEFAULT
    EXECUTE format(
        'INSERT INTO memory.agents AS a (user_id, name, system_prompt, model, tools, max_context_tokens,
                                         reply_max_tokens, temperature, summarize_threshold, auto_reply, metadata,
                                         retention_days)
         VALUES ($1, $2, $3, $4, %s, %s, %s, %s, $11, %s, %s, $12) RETURNING a.*',
        CASE WHEN create_agent.tools IS NULL THEN 'DEFAULT' ELSE '$5' END,
        CASE WHEN create_agent.max_context_tokens IS NULL THEN 'DEFAULT' ELSE '$6' END,
        CASE WHEN create_agent.reply_max_tokens IS NULL THEN 'DEFAULT' ELSE '$7' END,
        CASE WHEN create_agent.temperature IS NULL THEN 'DEFAULT' ELSE '$8' END,
        CASE WHEN create_agent.auto_reply IS NULL THEN 'DEFAULT' ELSE '$9' END,
        CASE WHEN create_agent.metadata IS NULL THEN 'DEFAULT' ELSE '$10' END)
    INTO v_row
    USING v_user, create_agent.name, create_agent.system_prompt, create_agent.model, create_agent.tools,
          create_agent.max_context_tokens, create_agent.reply_max_tokens, create_agent.temperature,
          create_agent.auto_reply, create_agent.metadata, create_agent.summarize_threshold, create_agent.retention_days;
    RETURN v_row;
END $$;

-- Changes the given settings; a NULL argument leaves its setting as it is (set a column to NULL
-- with a plain UPDATE).
CREATE OR REPLACE FUNCTION memory.update_agent(
    agent_id uuid,
    name text DEFAULT NULL,
    system_prompt text DEFAULT NULL,
    model text DEFAULT NULL,
    tools jsonb DEFAULT NULL,
    max_context_tokens integer DEFAULT NULL,
    reply_max_tokens integer DEFAULT NULL,
    temperature real DEFAULT NULL,
    summarize_threshold integer DEFAULT NULL,
    auto_reply boolean DEFAULT NULL,
    metadata jsonb DEFAULT NULL,
    retention_days integer DEFAULT NULL
) RETURNS memory.agents
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.agents;
BEGIN
    IF update_agent.agent_id IS NULL THEN
        RAISE EXCEPTION 'agent_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE memory.agents a
       SET name = coalesce(update_agent.name, a.name), system_prompt = coalesce(update_agent.system_prompt, a.system_prompt), model = coalesce(update_agent.model, a.model),
           tools = coalesce(update_agent.tools, a.tools), max_context_tokens = coalesce(update_agent.max_context_tokens, a.max_context_tokens),
           reply_max_tokens = coalesce(update_agent.reply_max_tokens, a.reply_max_tokens), temperature = coalesce(update_agent.temperature, a.temperature),
           summarize_threshold = coalesce(update_agent.summarize_threshold, a.summarize_threshold), auto_reply = coalesce(update_agent.auto_reply, a.auto_reply),
           metadata = coalesce(update_agent.metadata, a.metadata), retention_days = coalesce(update_agent.retention_days, a.retention_days)
     WHERE a.id = update_agent.agent_id AND a.user_id = memory.current_user_id()
    RETURNING a.* INTO v_row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % does not exist', update_agent.agent_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_row;
END $$;

-- Deletes one's own agent. Its conversations stay (agent_id is a plain uuid) and from then on
-- use the defaults: no system prompt, memory.llm_model, the agents table's default window.
CREATE OR REPLACE FUNCTION memory.delete_agent(agent_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (DELETE FROM memory.agents a WHERE a.id = delete_agent.agent_id AND a.user_id = memory.current_user_id() RETURNING 1)
    SELECT count(*) > 0 FROM gone;
$$;

CREATE OR REPLACE FUNCTION memory.get_agent(agent_id uuid) RETURNS memory.agents
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.agents;
BEGIN
    SELECT a.* INTO v_row FROM memory.agents a WHERE a.id = get_agent.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % does not exist', get_agent.agent_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_row;
END $$;

-- The caller's own agents, oldest first (agents shared through share_config are not listed: they
-- are read through the conversations they apply to).
CREATE OR REPLACE FUNCTION memory.list_agents() RETURNS SETOF memory.agents
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.* FROM memory.agents a WHERE a.user_id = memory.current_user_id() ORDER BY a.created_at, a.id;
$$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._agent_before_write()
FROM PUBLIC;
