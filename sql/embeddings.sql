-- Embeddings for semantic and hybrid search (memory.message_embeddings, in tables.sql).
--
-- With memory.embedding_model set, every INSERT statement into conversation_messages queues an
-- 'embed' job for each conversation it wrote (one pending job per conversation; the append never
-- waits for it). The worker sends the conversation's messages that have no vector of the model to
-- the provider's /embeddings endpoint in batches of memory.embedding_batch, with no transaction
-- open during the call, and stores a batch whole or not at all; a longer backlog queues the next
-- job. Routes that write with the triggers off (import, fork) and messages stored before the
-- model was set are queued by memory.queue_embeddings().
--
-- pgvector's type, operators and functions are named through the schema it is installed in
-- (memory._vector_schema(): `public` on a plain install, `extensions` on Supabase), in dynamic
-- SQL, so that these functions keep their search_path to pg_catalog. memory._embedding_model()
-- (Rust) is the model in use, NULL when embeddings are off; memory._embedding_min_similarity()
-- the similarity at or below which semantic hits and recall candidates are left out.

-- The schema of the vector extension.
CREATE OR REPLACE FUNCTION memory._vector_schema() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'
$$;

-- The next messages of a conversation without a vector of the model, oldest first, with the text
-- that is embedded (the content; messages without any, like a bare tool call, are not embedded),
-- then its owner's current facts without one. The worker's.
CREATE OR REPLACE FUNCTION memory._embedding_batch(p_conversation_id uuid, p_model text, p_limit integer)
RETURNS TABLE (id uuid, input text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    (SELECT m.id, m.content FROM memory.conversation_messages m
      WHERE m.conversation_id = p_conversation_id AND m.content <> ''
        AND NOT EXISTS (SELECT 1 FROM memory.message_embeddings e WHERE e.message_id = m.id AND e.model = p_model)
      ORDER BY m.seq
      LIMIT p_limit)
    UNION ALL
    (SELECT f.id, f.content FROM memory.conversations c JOIN memory.facts f ON f.user_id = c.user_id
      WHERE c.id = p_conversation_id AND f.superseded_at IS NULL AND f.embedding_model IS DISTINCT FROM p_model
      ORDER BY f.created_at
      LIMIT p_limit)
    LIMIT p_limit;
$$;

-- Stores a batch's vectors (pgvector's text form, in the order of p_ids, with the texts they
-- were computed from) and says whether the conversation has more to embed. Messages deleted
-- meanwhile are skipped, and so are facts deleted or edited meanwhile (their new text is
-- embedded by the next job). The worker's.
CREATE OR REPLACE FUNCTION memory._store_embeddings(p_conversation_id uuid, p_model text, p_ids uuid[], p_vectors text[],
                                                    p_inputs text[])
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF cardinality(p_ids) IS DISTINCT FROM cardinality(p_vectors) OR cardinality(p_ids) IS DISTINCT FROM cardinality(p_inputs) THEN
        RAISE EXCEPTION 'a batch of % inputs with % vectors', cardinality(p_ids), cardinality(p_vectors)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format(
        'INSERT INTO memory.message_embeddings AS e (message_id, conversation_id, model, embedding)
         SELECT m.id, m.conversation_id, $2, v.embedding::%1$I.vector
           FROM unnest($3, $4) AS v(id, embedding)
           JOIN memory.conversation_messages m ON m.id = v.id AND m.conversation_id = $1
         ON CONFLICT (message_id, model) DO UPDATE SET embedding = excluded.embedding, created_at = now()',
        memory._vector_schema())
    USING p_conversation_id, p_model, p_ids, p_vectors;
    EXECUTE format(
        'UPDATE memory.facts f SET embedding = v.embedding::%1$I.vector, embedding_model = $2
           FROM unnest($3, $4, $5) AS v(id, embedding, input), memory.conversations c
          WHERE c.id = $1 AND f.id = v.id AND f.user_id = c.user_id AND f.content = v.input',
        memory._vector_schema())
    USING p_conversation_id, p_model, p_ids, p_vectors, p_inputs;
    RETURN EXISTS (SELECT 1 FROM memory._embedding_batch(p_conversation_id, p_model, 1));
END $$;

-- Queues an embed job for every conversation (or the one given) that has messages without a
-- vector of memory.embedding_model: after setting or changing the model, and after imports and
-- forks, which write with the triggers off. Returns how many conversations were queued.
-- Superusers only.
CREATE OR REPLACE FUNCTION memory.queue_embeddings(conversation_id uuid DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_model text := memory._embedding_model();
    v_n     bigint := 0;
    r       record;
BEGIN
    IF NOT memory._current_role_is_superuser() THEN
        RAISE EXCEPTION 'memory.queue_embeddings is for superusers' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF v_model IS NULL THEN
        RAISE EXCEPTION 'embeddings are off: memory.embedding_model is not set' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR r IN SELECT c.id FROM memory.conversations c
              WHERE (queue_embeddings.conversation_id IS NULL OR c.id = queue_embeddings.conversation_id)
                AND EXISTS (SELECT 1 FROM memory._embedding_batch(c.id, v_model, 1))
    LOOP
        PERFORM memory._enqueue_job('embed', r.id);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END $$;

-- The caller's messages nearest in meaning to p_embedding (pgvector's text form; cosine), one
-- page (plus one row) after the cursor (p_rank, p_after), rank = 1 - cosine distance, above
-- memory.embedding_min_similarity. Same
-- filters and same scope as memory._search_hits: SECURITY DEFINER so that the scope is computed
-- here, by the read rule, from the caller's identity, never from an argument. The scope is the
-- caller's own conversations and those shared with it (an exact scan of their vectors, through
-- the index on conversation_id): a user's search costs what that user can read.
CREATE OR REPLACE FUNCTION memory._semantic_hits(p_embedding text, p_model text, p_conversation_id uuid, p_agent_id uuid,
                                    p_role text, p_since timestamptz, p_until timestamptz, p_tool text,
                                    p_has_tool_calls boolean, p_limit integer, p_rank real, p_after uuid)
RETURNS TABLE (id uuid, conversation_id uuid, seq bigint, role text, created_at timestamptz, content text,
               tool_calls jsonb, rank real)
LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 100 SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me    uuid := memory.current_user_id();
    v_all   boolean := memory._caller_bypasses_rls();
    v_scope uuid[];   -- the conversations searched; NULL: all of them (a role that bypasses RLS)
BEGIN
    IF v_me IS NULL AND NOT v_all THEN
        RETURN;
    END IF;
    IF p_conversation_id IS NOT NULL THEN
        IF NOT (v_all OR memory.can_read(p_conversation_id)) THEN
            RETURN;
        END IF;
        v_scope := ARRAY[p_conversation_id];
    ELSIF NOT v_all THEN
        SELECT coalesce(array_agg(c.id), '{}') INTO v_scope FROM memory.conversations c WHERE c.user_id = v_me;
        v_scope := v_scope || memory._shared_with(v_me, false);
    END IF;
    IF p_agent_id IS NOT NULL THEN
        SELECT coalesce(array_agg(c.id), '{}') INTO v_scope FROM memory.conversations c
         WHERE c.agent_id = p_agent_id AND (v_scope IS NULL OR c.id = ANY (v_scope));
    END IF;
    -- The vectors are ranked first, alone; the messages are read for the page only (all of the
    -- ranked ones when a filter on the messages' columns may drop some).
    RETURN QUERY EXECUTE format($q$
        WITH q AS (SELECT $1::%1$I.vector AS v),
        ranked AS (
            SELECT h.* FROM (
                SELECT e.message_id, (1 - (e.embedding OPERATOR(%1$I.<=>) q.v))::real AS rank
                  FROM q, memory.message_embeddings e
                 WHERE e.model = $2
                   AND ($3::uuid[] IS NULL OR e.conversation_id = ANY ($3))
                   -- vectors of another length (the model's dimensions changed) are not comparable
                   AND %1$I.vector_dims(e.embedding) = %1$I.vector_dims(q.v)) h
             WHERE h.rank > $12
               AND ($9::real IS NULL OR h.rank < $9 OR (h.rank = $9 AND h.message_id > $10))
             ORDER BY h.rank DESC, h.message_id
             LIMIT CASE WHEN coalesce($4, $5::text, $6::text, $7::text, $8) IS NULL THEN $11 + 1 END)
        SELECT m.id, m.conversation_id, m.seq, m.role, m.created_at, m.content, m.tool_calls, r.rank
          FROM ranked r JOIN memory.conversation_messages m ON m.id = r.message_id
         WHERE ($4::text IS NULL OR m.role = $4)
           AND ($5::timestamptz IS NULL OR m.created_at >= $5)
           AND ($6::timestamptz IS NULL OR m.created_at < $6)
           AND ($7::boolean IS NULL OR (m.tool_calls IS NOT NULL) = $7)
           AND ($8::text IS NULL OR m.tool_calls @> jsonb_build_array(jsonb_build_object('function', jsonb_build_object('name', $8)))
                                 OR m.tool_calls @> jsonb_build_array(jsonb_build_object('tool', $8)))
         ORDER BY r.rank DESC, m.id
         LIMIT $11 + 1 $q$, memory._vector_schema())
    USING p_embedding, p_model, v_scope, p_role, p_since, p_until, p_has_tool_calls, p_tool, p_rank, p_after, p_limit,
          memory._embedding_min_similarity()::real;
END $$;

-- build_context's recall, ranked by cosine similarity to the newest user message of the
-- conversation that has a vector of the current model, above memory.embedding_min_similarity:
-- p_user's current facts (the general ones and those for p_agent; fact_id set), and the
-- conversation's plain user and assistant messages before p_before_seq (seq set; a tool call or
-- result is never recalled: it would be half of a pair), at most p_limit of each. Nothing when
-- embeddings are off or no user message has a vector yet (the worker embeds shortly after the
-- append). Invoker: RLS decides what the caller reads (its own facts only).
CREATE OR REPLACE FUNCTION memory._recall_candidates(p_conversation_id uuid, p_before_seq bigint, p_limit bigint,
                                                     p_user uuid, p_agent uuid)
RETURNS TABLE (fact_id uuid, seq bigint, role text, content text, similarity real)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_model text := memory._embedding_model();
BEGIN
    IF v_model IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH q AS (SELECT e.embedding AS v
                     FROM memory.conversation_messages m
                     JOIN memory.message_embeddings e ON e.message_id = m.id AND e.model = $2
                    WHERE m.conversation_id = $1 AND m.role = 'user'
                    ORDER BY m.seq DESC LIMIT 1)
        (SELECT NULL::uuid, h.seq, h.role, h.content, h.similarity FROM (
            SELECT m.seq, m.role, m.content, (1 - (e.embedding OPERATOR(%1$I.<=>) q.v))::real AS similarity
              FROM q, memory.message_embeddings e
              JOIN memory.conversation_messages m ON m.id = e.message_id
             WHERE e.conversation_id = $1 AND e.model = $2 AND m.seq < $3
               AND m.role IN ('user', 'assistant') AND m.tool_calls IS NULL
               AND %1$I.vector_dims(e.embedding) = %1$I.vector_dims(q.v)) h
          WHERE h.similarity > $5
          ORDER BY h.similarity DESC, h.seq
          LIMIT $4)
        UNION ALL
        (SELECT h.id, NULL::bigint, NULL::text, h.content, h.similarity FROM (
            SELECT f.id, f.content, (1 - (f.embedding OPERATOR(%1$I.<=>) q.v))::real AS similarity
              FROM q, memory.facts f
             WHERE f.user_id = $6 AND f.superseded_at IS NULL AND (f.agent_id IS NULL OR f.agent_id = $7)
               AND f.embedding_model = $2
               AND %1$I.vector_dims(f.embedding) = %1$I.vector_dims(q.v)) h
          WHERE h.similarity > $5
          ORDER BY h.similarity DESC, h.id
          LIMIT $4) $q$, memory._vector_schema())
    USING p_conversation_id, v_model, p_before_seq, p_limit,
          memory._embedding_min_similarity()::real, p_user, p_agent;
END $$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._embedding_batch(uuid, text, integer),
    memory._store_embeddings(uuid, text, uuid[], text[], text[]),
    memory.queue_embeddings(uuid)
FROM PUBLIC;
