-- Full-text search over every conversation the caller can read.
--
-- Each message carries its search_vector (memory._search_vector, set by the insert trigger, the
-- import and the fork). A query is the caller's words (websearch syntax) AND any one of the
-- lexemes naming the caller's readable conversations, so the GIN index intersects the words with
-- the caller's own messages: the cost follows what the caller stored, not what everyone stored.
-- RLS still filters every row returned.

-- query: web-search syntax ("quoted phrases", or, -word), in memory.search_config (a stopword-only
-- query finds nothing). Filters: conversation_id, agent_id, role, since/until (created_at), tool
-- (a tool name the message calls), has_tool_calls. Results are ranked (ts_rank_cd), equal ranks
-- in message id order; a page is {"results": [...], "next_cursor": text|null}; pass next_cursor back
-- as cursor for the next page. Snippets are plain text with the matches between ** and **:
-- escape them before rendering as HTML.
CREATE FUNCTION memory.search_messages(
    query text,
    conversation_id uuid DEFAULT NULL,
    agent_id uuid DEFAULT NULL,
    role text DEFAULT NULL,
    since timestamptz DEFAULT NULL,
    until timestamptz DEFAULT NULL,
    tool text DEFAULT NULL,
    has_tool_calls boolean DEFAULT NULL,
    "limit" integer DEFAULT 20,
    cursor text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_config regconfig := memory._search_config()::regconfig;
    v_query  tsquery;
    v_scope  tsquery;
    v_rank   real;
    v_after  uuid;
    v_result jsonb;
BEGIN
    IF v_config IS NULL THEN
        RAISE EXCEPTION 'search is off on this server (memory.search_config = off)'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'query must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length($1) > 1000 THEN
        RAISE EXCEPTION 'query longer than 1000 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $9 IS NULL OR $9 < 1 OR $9 > 100 THEN
        RAISE EXCEPTION 'limit must be between 1 and 100, got %', coalesce($9::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $4 IS NOT NULL AND $4 NOT IN ('user', 'assistant', 'system', 'tool') THEN
        RAISE EXCEPTION 'unknown role "%"', left($4, 80) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $10 IS NOT NULL THEN
        BEGIN
            v_rank := split_part($10, '/', 1)::real;
            v_after := split_part($10, '/', 2)::uuid;
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            RAISE EXCEPTION 'cursor "%" is not a cursor of search_messages', left($10, 80)
                USING ERRCODE = 'invalid_parameter_value';
        END;
    END IF;
    v_query := websearch_to_tsquery(v_config, $1);
    IF numnode(v_query) = 0 THEN
        RETURN jsonb_build_object('results', '[]'::jsonb, 'next_cursor', NULL);
    END IF;
    SELECT string_agg('conv' || replace(c.id::text, '-', ''), ' | ')::tsquery INTO v_scope
      FROM memory.conversations c
     WHERE ($2 IS NULL OR c.id = $2) AND ($3 IS NULL OR c.agent_id = $3);
    IF v_scope IS NULL THEN
        RETURN jsonb_build_object('results', '[]'::jsonb, 'next_cursor', NULL);
    END IF;
    WITH hits AS (
        SELECT m.id, m.conversation_id, m.seq, m.role, m.created_at, m.content, m.tool_calls,
               ts_rank_cd(m.search_vector, v_query) AS rank
          FROM memory.conversation_messages m
         WHERE m.search_vector @@ (v_query && v_scope)
           AND ($4 IS NULL OR m.role = $4)
           AND ($5 IS NULL OR m.created_at >= $5)
           AND ($6 IS NULL OR m.created_at < $6)
           AND ($8 IS NULL OR (m.tool_calls IS NOT NULL) = $8)
           AND ($7 IS NULL OR m.tool_calls @> jsonb_build_array(jsonb_build_object('function', jsonb_build_object('name', $7)))
                           OR m.tool_calls @> jsonb_build_array(jsonb_build_object('tool', $7)))
    ), page AS (
        SELECT h.* FROM hits h
         WHERE v_rank IS NULL OR h.rank < v_rank OR (h.rank = v_rank AND h.id > v_after)
         ORDER BY h.rank DESC, h.id
         LIMIT $9 + 1
    ), numbered AS (
        SELECT p.*, row_number() OVER (ORDER BY p.rank DESC, p.id) AS n FROM page p
    )
    SELECT jsonb_build_object(
               'results', coalesce(jsonb_agg(jsonb_build_object(
                   'conversation_id', x.conversation_id, 'title', c.title, 'agent_id', c.agent_id,
                   'message_id', x.id, 'seq', x.seq, 'role', x.role, 'created_at', x.created_at, 'rank', x.rank,
                   'snippet', ts_headline(v_config,
                                          left(concat_ws(' ', nullif(x.content, ''), (
                                              SELECT string_agg(concat_ws(' ', call->'function'->>'name', call->'function'->>'arguments',
                                                                          call->>'tool', call->>'input', call->>'output'), ' ')
                                                FROM jsonb_array_elements(coalesce(x.tool_calls, '[]')) AS call)), 20000),
                                          v_query, 'StartSel=**, StopSel=**, MaxWords=30, MinWords=10, MaxFragments=2, FragmentDelimiter=" … "'))
                   ORDER BY x.n) FILTER (WHERE x.n <= $9), '[]'::jsonb),
               'next_cursor', (SELECT y.rank::text || '/' || y.id FROM numbered y WHERE y.n = $9 AND EXISTS (SELECT 1 FROM numbered z WHERE z.n > $9)))
      INTO v_result
      FROM numbered x JOIN memory.conversations c ON c.id = x.conversation_id;
    RETURN v_result;
END $$;

-- Recomputes every message's search_vector in the current memory.search_config (after changing
-- it; 'off' empties them), in batches of `batch` messages; returns how many were updated.
-- Superusers only.
CREATE FUNCTION memory.reindex_search(batch integer DEFAULT 10000) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_config regconfig := memory._search_config()::regconfig;
    v_done   bigint := 0;
    v_n      bigint;
    v_last   uuid := '00000000-0000-0000-0000-000000000000';
BEGIN
    IF NOT memory._current_role_is_superuser() THEN
        RAISE EXCEPTION 'memory.reindex_search is for superusers' USING ERRCODE = 'insufficient_privilege';
    END IF;
    LOOP
        WITH b AS (SELECT m.id FROM memory.conversation_messages m WHERE m.id > v_last ORDER BY m.id LIMIT greatest($1, 1)),
             u AS (UPDATE memory.conversation_messages m
                      SET search_vector = memory._search_vector(v_config, m.conversation_id, m.content, m.tool_calls)
                     FROM b WHERE m.id = b.id RETURNING m.id)
        SELECT count(*), (array_agg(u.id ORDER BY u.id DESC))[1] INTO v_n, v_last FROM u;
        EXIT WHEN v_n = 0;
        v_done := v_done + v_n;
    END LOOP;
    RETURN v_done;
END $$;
REVOKE EXECUTE ON FUNCTION memory.reindex_search(integer) FROM PUBLIC;
