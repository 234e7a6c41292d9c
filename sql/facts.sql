-- Long-term memory: facts about a user (memory.facts, in tables.sql).
--
-- With memory.extract_facts on, an INSERT statement that adds a plain assistant message (a
-- finished turn) queues an 'extract' job for its conversation. The worker sends the messages the
-- conversation's extract jobs have not read yet (memory._fact_batch) and the owner's current
-- facts (memory._known_facts) to the LLM, which answers with decisions in the manner of mem0: add
-- a fact, update one (the new row supersedes the old), delete one (it is superseded without a
-- successor), or nothing. memory._apply_facts writes the decisions and the progress in one
-- transaction, or nothing. Only the owner's own user messages are a source: a member of a shared
-- conversation cannot write facts about its owner. New and edited facts are embedded by the
-- conversation's embed jobs (memory._embedding_batch) and recalled by build_context's `recall`.

-- ---- what users call ---------------------------------------------------------------------------

-- A fact as the functions return it (no vector: it is the worker's).
CREATE OR REPLACE FUNCTION memory._fact_json(f memory.facts) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('id', f.id, 'agent_id', f.agent_id, 'conversation_id', f.conversation_id,
                              'source_message_ids', to_jsonb(f.source_message_ids), 'content', f.content,
                              'superseded_by', f.superseded_by, 'superseded_at', f.superseded_at,
                              'embedded', f.embedding IS NOT NULL, 'created_at', f.created_at, 'updated_at', f.updated_at);
$$;

-- The caller's facts, oldest first: all of them, or those for one agent (its own and the
-- general ones); superseded facts only when asked for.
CREATE OR REPLACE FUNCTION memory.list_facts(agent_id uuid DEFAULT NULL, include_superseded boolean DEFAULT false)
RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(jsonb_agg(memory._fact_json(f) ORDER BY f.created_at, f.id), '[]')
      FROM memory.facts f
     WHERE f.user_id = memory.current_user_id()
       AND (list_facts.agent_id IS NULL OR f.agent_id IS NULL OR f.agent_id = list_facts.agent_id)
       AND (coalesce(list_facts.include_superseded, false) OR f.superseded_at IS NULL);
$$;

-- Adds a fact of the caller's (for one of its agents only, with agent_id).
CREATE OR REPLACE FUNCTION memory.add_fact(content text, agent_id uuid DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.facts;
BEGIN
    PERFORM memory._identity();
    IF add_fact.agent_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM memory.agents a WHERE a.id = add_fact.agent_id AND a.user_id = memory.current_user_id()) THEN
        RAISE EXCEPTION 'agent % does not exist', add_fact.agent_id USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO memory.facts AS f (agent_id, content) VALUES (add_fact.agent_id, add_fact.content) RETURNING f.* INTO v_row;
    RETURN memory._fact_json(v_row);
END $$;

-- Changes the text of one of the caller's facts (its vector is recomputed by the worker).
CREATE OR REPLACE FUNCTION memory.edit_fact(fact_id uuid, content text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.facts;
BEGIN
    IF edit_fact.fact_id IS NULL THEN
        RAISE EXCEPTION 'fact_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE memory.facts f SET content = edit_fact.content
     WHERE f.id = edit_fact.fact_id AND f.user_id = memory.current_user_id()
    RETURNING f.* INTO v_row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fact % does not exist', edit_fact.fact_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN memory._fact_json(v_row);
END $$;

-- Deletes one of the caller's facts for good (facts it superseded stay superseded).
CREATE OR REPLACE FUNCTION memory.delete_fact(fact_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (DELETE FROM memory.facts f WHERE f.id = delete_fact.fact_id AND f.user_id = memory.current_user_id() RETURNING 1)
    SELECT count(*) > 0 FROM gone;
$$;

-- ---- validation and embedding ------------------------------------------------------------------

-- A fact's text is trimmed and 1-1000 characters; owner, id and creation never change; a new
-- text clears the vector of the old one.
CREATE OR REPLACE FUNCTION memory._fact_before_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.id, NEW.user_id, NEW.created_at) IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.created_at) THEN
        RAISE EXCEPTION 'the id, owner and creation time of a fact cannot change' USING ERRCODE = 'feature_not_supported';
    END IF;
    IF NEW.content IS NULL THEN
        RAISE EXCEPTION 'content must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    NEW.content := btrim(NEW.content, E' \t\r\n');
    IF length(NEW.content) NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'a fact is 1 to 1000 characters, got %', length(NEW.content) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_OP = 'INSERT' THEN
        NEW.created_at := now();
        NEW.updated_at := now();
    ELSIF NEW.content IS DISTINCT FROM OLD.content THEN
        NEW.embedding := NULL;
        NEW.embedding_model := NULL;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER facts_before_write BEFORE INSERT OR UPDATE ON memory.facts
    FOR EACH ROW EXECUTE FUNCTION memory._fact_before_write();

-- A fact without a vector queues an embed job (with memory.embedding_model set) for the
-- conversation it came from, or the owner's newest one: embed jobs embed their conversation
-- owner's facts along with the messages. SECURITY DEFINER: the queue is the worker's.
CREATE OR REPLACE FUNCTION memory._fact_after_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_conversation uuid;
BEGIN
    IF memory._embedding_model() IS NULL OR NEW.superseded_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    SELECT c.id INTO v_conversation FROM memory.conversations c
     WHERE c.user_id = NEW.user_id
     ORDER BY coalesce(c.id = NEW.conversation_id, false) DESC, c.updated_at DESC
     LIMIT 1;
    IF v_conversation IS NOT NULL THEN
        PERFORM memory._enqueue_job('embed', v_conversation);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER facts_after_write AFTER INSERT OR UPDATE OF content ON memory.facts
    FOR EACH ROW WHEN (NEW.embedding IS NULL) EXECUTE FUNCTION memory._fact_after_write();

-- ---- the worker's side -------------------------------------------------------------------------

-- The next messages of a conversation its extract jobs have not read: plain user and assistant
-- messages after the progress mark, oldest first, within p_max_tokens (at least one).
-- `from_owner`: a user message the conversation's owner wrote (the only source of facts).
CREATE OR REPLACE FUNCTION memory._fact_batch(p_conversation_id uuid, p_max_tokens integer)
RETURNS TABLE (id uuid, seq bigint, role text, content text, from_owner boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT b.id, b.seq, b.role, b.content, b.from_owner FROM (
        SELECT n.*, sum(n.token_count) OVER (ORDER BY n.seq) - n.token_count AS before FROM (
            SELECT m.id, m.seq, m.role, m.content, m.token_count,
                   m.role = 'user' AND (m.author_id IS NULL OR m.author_id = c.user_id) AS from_owner
              FROM memory.conversations c
              JOIN memory.conversation_messages m ON m.conversation_id = c.id
             WHERE c.id = p_conversation_id
               AND m.seq > coalesce((SELECT p.through_seq FROM memory.fact_progress p WHERE p.conversation_id = c.id), 0)
               AND m.role IN ('user', 'assistant') AND m.tool_calls IS NULL AND m.content <> ''
             ORDER BY m.seq
             LIMIT 256) n) b
     WHERE b.before < p_max_tokens
     ORDER BY b.seq;
$$;

-- The owner's current facts that an extraction weighs a conversation's messages against: the
-- general ones and those for the conversation's agent, newest first.
CREATE OR REPLACE FUNCTION memory._known_facts(p_conversation_id uuid, p_limit integer)
RETURNS TABLE (id uuid, content text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT f.id, f.content FROM memory.conversations c
      JOIN memory.facts f ON f.user_id = c.user_id
     WHERE c.id = p_conversation_id AND f.superseded_at IS NULL
       AND (f.agent_id IS NULL OR f.agent_id = c.agent_id)
     ORDER BY f.created_at DESC, f.id
     LIMIT p_limit;
$$;

-- Writes an extraction's decisions (a JSON array of {"op": "add", "content"}, {"op": "update",
-- "id", "content"} and {"op": "delete", "id"}, ids of the owner's current facts) and moves the
-- conversation's progress mark to p_through_seq, in one transaction. A decision about a fact the
-- user changed or deleted meanwhile is dropped (the user's word wins); a batch already applied
-- (the mark is past it) writes nothing. Returns whether more messages wait after the mark.
CREATE OR REPLACE FUNCTION memory._apply_facts(p_conversation_id uuid, p_through_seq bigint, p_decisions jsonb,
                                               p_sources uuid[])
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_owner uuid;
    v_done  bigint;
    v_old   memory.facts;
    v_new   uuid;
    d       jsonb;
BEGIN
    SELECT c.user_id INTO v_owner FROM memory.conversations c WHERE c.id = p_conversation_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO memory.fact_progress (conversation_id, through_seq) VALUES (p_conversation_id, 0)
    ON CONFLICT (conversation_id) DO NOTHING;
    SELECT p.through_seq INTO v_done FROM memory.fact_progress p WHERE p.conversation_id = p_conversation_id FOR UPDATE;
    IF p_through_seq > v_done THEN
        FOR d IN SELECT x FROM jsonb_array_elements(p_decisions) AS x LOOP
            CASE d->>'op'
            WHEN 'add' THEN
                INSERT INTO memory.facts (user_id, conversation_id, source_message_ids, content)
                VALUES (v_owner, p_conversation_id, p_sources, d->>'content');
            WHEN 'update' THEN
                SELECT f.* INTO v_old FROM memory.facts f
                 WHERE f.id = (d->>'id')::uuid AND f.user_id = v_owner AND f.superseded_at IS NULL FOR UPDATE;
                IF FOUND AND v_old.content IS DISTINCT FROM btrim(d->>'content', E' \t\r\n') THEN
                    INSERT INTO memory.facts (user_id, agent_id, conversation_id, source_message_ids, content)
                    VALUES (v_owner, v_old.agent_id, p_conversation_id, p_sources, d->>'content')
                    RETURNING id INTO v_new;
                    UPDATE memory.facts f SET superseded_by = v_new, superseded_at = now() WHERE f.id = v_old.id;
                END IF;
            WHEN 'delete' THEN
                UPDATE memory.facts f SET superseded_at = now()
                 WHERE f.id = (d->>'id')::uuid AND f.user_id = v_owner AND f.superseded_at IS NULL;
            ELSE
                RAISE EXCEPTION 'unknown fact decision %', memory._clip(d::text) USING ERRCODE = 'invalid_parameter_value';
            END CASE;
        END LOOP;
        UPDATE memory.fact_progress p SET through_seq = p_through_seq, updated_at = now()
         WHERE p.conversation_id = p_conversation_id;
    END IF;
    RETURN EXISTS (SELECT 1 FROM memory._fact_batch(p_conversation_id, 1));
END $$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._fact_before_write(),
    memory._fact_after_write(),
    memory._fact_batch(uuid, integer),
    memory._known_facts(uuid, integer),
    memory._apply_facts(uuid, bigint, jsonb, uuid[])
FROM PUBLIC;
