-- Full-text search over every conversation the caller can read.
--
-- Each message carries its search_vector (memory._search_vector, set by the insert trigger, the
-- import and the fork) with two unforgeable lexemes: its conversation's and its conversation's
-- owner's. A query is the caller's words (websearch syntax) AND a scope lexeme, so the GIN index
-- intersects the words with the caller's own messages: the cost follows what the caller stored,
-- not what everyone stored, nor how many conversations it has. Conversations shared with the
-- caller are found through their owners' lexemes (50 owners per scan) and kept by their ids (a
-- hashed set): the cost follows what those owners stored. The match runs in memory._search_hits
-- (see there why as the owner, and how it stays within the rule); the page is then joined to
-- conversations under the caller's RLS.

-- The words of a message as search_messages finds them: its content and its tool calls (names,
-- arguments, inputs and results), in the search configuration, plus two lexemes: one naming its
-- conversation ("conv", a space, and the id's hex digits) and one naming the conversation's owner
-- ("user", a space, the hex digits). Through them the GIN index finds a caller's messages without
-- visiting anyone else's: all of an owner's through one lexeme, however many conversations it
-- has, or one conversation's (RLS still decides what is returned). The space makes the lexemes
-- unforgeable: the text search parser never puts one inside a token, so no content can produce
-- them (a message reading "conv<hex>" is just a word). A transfer rewrites the owner lexeme of
-- the conversation's messages.
-- At most the first 200,000 characters are indexed (a tsvector holds at most 1 MB).
-- Plain SQL without SET clauses, so that PostgreSQL inlines it where it is called.
CREATE OR REPLACE FUNCTION memory._conversation_lexeme(conversation_id uuid) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'conv ' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.uuid_send($1), 'hex')
$$;

CREATE OR REPLACE FUNCTION memory._owner_lexeme(user_id uuid) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'user ' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.uuid_send($1), 'hex')
$$;

-- PL/pgSQL rather than SQL: called once per appended row, a SQL function (not inlinable here) would
-- be planned again in every transaction, which cost an append more than the words themselves.
CREATE OR REPLACE FUNCTION memory._search_vector(config regconfig, conversation_id uuid, owner uuid, content text, tool_calls jsonb)
RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_calls text;
BEGIN
    IF _search_vector.config IS NULL THEN  -- memory.search_config = 'off'
        RETURN NULL;
    END IF;
    IF jsonb_typeof(_search_vector.tool_calls) = 'array' THEN
        SELECT string_agg(concat_ws(' ', c.call->'function'->>'name', c.call->'function'->>'arguments', c.call->>'tool',
                                    c.call->>'input', c.call->>'output'), ' ')
          INTO v_calls FROM jsonb_array_elements(_search_vector.tool_calls) AS c(call);
    END IF;
    RETURN to_tsvector(_search_vector.config, left(concat_ws(' ', _search_vector.content, v_calls), 200000))
           || array_to_tsvector(ARRAY[memory._conversation_lexeme(_search_vector.conversation_id), memory._owner_lexeme(_search_vector.owner)]);
END;
$$;

-- The caller's matching messages, ranked, one page (plus one row) per scan after the cursor
-- (p_rank, p_after): search_messages keeps the best page of all. SECURITY DEFINER so that the GIN
-- index serves the match: under RLS the planner may not use the (not leakproof) @@ operator as an
-- index condition and would read every message. It trusts no argument for access: the scope is
-- computed here, by the authorization rule, from the caller's identity (a role that bypasses RLS
-- searches everything, as RLS lets it).
CREATE OR REPLACE FUNCTION memory._search_hits(p_query tsquery, p_conversation_id uuid, p_agent_id uuid, p_role text,
                                    p_since timestamptz, p_until timestamptz, p_tool text, p_has_tool_calls boolean,
                                    p_limit integer, p_rank real, p_after uuid)
RETURNS TABLE (id uuid, conversation_id uuid, seq bigint, role text, created_at timestamptz, content text,
               tool_calls jsonb, rank real)
-- a few pages at most: the planner joins them to conversations by id (not a scan of them all)
LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 100 SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me     uuid := memory.current_user_id();
    v_all    boolean := memory._caller_bypasses_rls();
    v_shared uuid[];
    v_scopes tsquery[];      -- one GIN scan each (NULL: no scope, for a role that bypasses RLS)
    v_agent  uuid[];
    v_i      integer;
BEGIN
    IF v_me IS NULL AND NOT v_all THEN
        RETURN;
    END IF;
    IF p_conversation_id IS NOT NULL THEN
        -- one conversation: its own lexeme, when the caller may read it
        IF NOT (v_all OR memory.can_read(p_conversation_id))
           OR (p_agent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.conversations c
                                                       WHERE c.id = p_conversation_id AND c.agent_id = p_agent_id)) THEN
            RETURN;
        END IF;
        v_scopes := ARRAY[quote_literal(memory._conversation_lexeme(p_conversation_id))::tsquery];
    ELSIF v_all THEN
        v_scopes := ARRAY[NULL::tsquery];
        IF p_agent_id IS NOT NULL THEN
            SELECT array_agg(c.id) INTO v_agent FROM memory.conversations c WHERE c.agent_id = p_agent_id;
        END IF;
    ELSE
        v_shared := memory._shared_with(v_me, false);
        -- the caller's own conversations, then the owners of those shared with it, 50 to a scan
        SELECT ARRAY[quote_literal(memory._owner_lexeme(v_me))::tsquery]
               || coalesce(array_agg(g.q ORDER BY g.k), '{}')
          INTO v_scopes
          FROM (SELECT o.k, string_agg(quote_literal(memory._owner_lexeme(o.owner_id)), ' | ')::tsquery AS q
                  FROM (SELECT d.owner_id, (row_number() OVER (ORDER BY d.owner_id) - 1) / 50 AS k
                          FROM (SELECT DISTINCT m.owner_id FROM memory.conversation_members m
                                 WHERE m.user_id = v_me AND m.accepted_at IS NOT NULL) d) o
                 GROUP BY o.k) g;
        IF p_agent_id IS NOT NULL THEN
            SELECT array_agg(x.id) INTO v_agent
              FROM (SELECT c.id FROM memory.conversations c WHERE c.user_id = v_me AND c.agent_id = p_agent_id
                    UNION ALL
                    SELECT c.id FROM unnest(v_shared) AS s(id) JOIN memory.conversations c ON c.id = s.id
                     WHERE c.agent_id = p_agent_id) x;
        END IF;
    END IF;
    IF p_agent_id IS NOT NULL AND p_conversation_id IS NULL AND v_agent IS NULL THEN
        RETURN;
    END IF;
    FOR v_i IN 1 .. cardinality(v_scopes) LOOP
        RETURN QUERY
            SELECT h.* FROM (
                SELECT m.id, m.conversation_id, m.seq, m.role, m.created_at, m.content, m.tool_calls,
                       -- every hit is ranked before the page is cut: ts_rank (term frequency, damped
                       -- by 1 + log of the message's length) costs less than half of ts_rank_cd
                       -- (cover density) per hit, which is what a common word's search spends
                       ts_rank(m.search_vector, p_query, 1) AS rank
                  FROM memory.conversation_messages m
                 WHERE m.search_vector @@ CASE WHEN v_scopes[v_i] IS NULL THEN p_query ELSE p_query && v_scopes[v_i] END
                   -- an owner's scan (after the caller's own) keeps the conversations shared with the caller
                   AND (v_i = 1 OR v_all OR p_conversation_id IS NOT NULL
                        OR m.conversation_id IN (SELECT s.id FROM unnest(v_shared) AS s(id)))
                   AND (v_agent IS NULL OR m.conversation_id IN (SELECT a.id FROM unnest(v_agent) AS a(id)))
                   AND (p_role IS NULL OR m.role = p_role)
                   AND (p_since IS NULL OR m.created_at >= p_since)
                   AND (p_until IS NULL OR m.created_at < p_until)
                   AND (p_has_tool_calls IS NULL OR (m.tool_calls IS NOT NULL) = p_has_tool_calls)
                   AND (p_tool IS NULL OR m.tool_calls @> jsonb_build_array(jsonb_build_object('function', jsonb_build_object('name', p_tool)))
                                       OR m.tool_calls @> jsonb_build_array(jsonb_build_object('tool', p_tool)))) h
             WHERE p_rank IS NULL OR h.rank < p_rank OR (h.rank = p_rank AND h.id > p_after)
             ORDER BY h.rank DESC, h.id
             LIMIT p_limit + 1;
    END LOOP;
END $$;

-- The hybrid ranking: the best 100 of the words' ranking and the best 100 of the meaning's, fused
-- by reciprocal rank (each list gives a message 1/(60 + its position in that list), the constant
-- of Cormack, Clarke and Büttcher's RRF), one page after the cursor (p_rank, p_after). Each list is
-- computed within the caller's scope by its own function.
CREATE OR REPLACE FUNCTION memory._hybrid_hits(p_query tsquery, p_embedding text, p_model text, p_conversation_id uuid,
                                    p_agent_id uuid, p_role text, p_since timestamptz, p_until timestamptz, p_tool text,
                                    p_has_tool_calls boolean, p_limit integer, p_rank real, p_after uuid)
RETURNS TABLE (id uuid, conversation_id uuid, seq bigint, role text, created_at timestamptz, content text,
               tool_calls jsonb, rank real)
LANGUAGE sql STABLE ROWS 100 SET search_path = pg_catalog, pg_temp AS $$
    WITH words AS (
        SELECT w.* FROM (
            SELECT t.*, row_number() OVER (ORDER BY t.rank DESC, t.id) AS pos
              FROM memory._search_hits(p_query, p_conversation_id, p_agent_id, p_role, p_since, p_until, p_tool,
                                       p_has_tool_calls, 100, NULL, NULL) t
             WHERE numnode(p_query) > 0) w
         WHERE w.pos <= 100
    ), meaning AS (
        SELECT s.*, row_number() OVER (ORDER BY s.rank DESC, s.id) AS pos
          FROM memory._semantic_hits(p_embedding, p_model, p_conversation_id, p_agent_id, p_role, p_since, p_until,
                                     p_tool, p_has_tool_calls, 99, NULL, NULL) s
    ), fused AS (
        SELECT coalesce(w.id, m.id) AS id, coalesce(w.conversation_id, m.conversation_id) AS conversation_id,
               coalesce(w.seq, m.seq) AS seq, coalesce(w.role, m.role) AS role,
               coalesce(w.created_at, m.created_at) AS created_at, coalesce(w.content, m.content) AS content,
               coalesce(w.tool_calls, m.tool_calls) AS tool_calls,
               (coalesce(1.0 / (60 + w.pos), 0) + coalesce(1.0 / (60 + m.pos), 0))::real AS rank
          FROM words w FULL JOIN meaning m ON m.id = w.id
    )
    SELECT f.* FROM fused f
     WHERE p_rank IS NULL OR f.rank < p_rank OR (f.rank = p_rank AND f.id > p_after)
     ORDER BY f.rank DESC, f.id
     LIMIT p_limit + 1;
$$;

-- mode: 'text' (the default: the words, below), 'semantic' (nearest in meaning: the query is
-- embedded by memory.embedding_model and compared with the messages' vectors, rank = cosine
-- similarity), or 'hybrid' (reciprocal-rank fusion of the best 100 of each ranking, rank = the
-- fused score, the sum of 1/(60 + position)). Without memory.embedding_model, 'semantic' is an
-- error and 'hybrid' answers with the words alone; the page's "mode" says which ranking answered.
-- Messages the worker has not embedded yet are found by their words only.
-- query: web-search syntax ("quoted phrases", or, -word), in memory.search_config (a stopword-only
-- query finds nothing). Filters: conversation_id, agent_id, role, since/until (created_at), tool
-- (a tool name the message calls), has_tool_calls. Results are ranked (ts_rank, normalised by
-- length), equal ranks in message id order; a page is {"results": [...], "next_cursor": text|null};
-- pass next_cursor back as cursor for the next page. Snippets are plain text with the matches between ** and **:
-- escape them before rendering as HTML.
CREATE OR REPLACE FUNCTION memory.search_messages(
    query text,
    conversation_id uuid DEFAULT NULL,
    agent_id uuid DEFAULT NULL,
    role text DEFAULT NULL,
    since timestamptz DEFAULT NULL,
    until timestamptz DEFAULT NULL,
    tool text DEFAULT NULL,
    has_tool_calls boolean DEFAULT NULL,
    "limit" integer DEFAULT 20,
    cursor text DEFAULT NULL,
    mode text DEFAULT 'text'
) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_config    regconfig := memory._search_config()::regconfig;
    v_mode      text := search_messages.mode;
    v_model     text := memory._embedding_model();
    v_query     tsquery;
    v_embedding jsonb;
    v_rank      real;
    v_after     uuid;
    v_result    jsonb;
BEGIN
    IF v_mode IS NULL OR v_mode NOT IN ('text', 'semantic', 'hybrid') THEN
        RAISE EXCEPTION 'mode must be text, semantic or hybrid, got %', coalesce(memory._clip(v_mode), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_mode = 'semantic' AND v_model IS NULL THEN
        RAISE EXCEPTION 'semantic search needs embeddings: memory.embedding_model is not set on this server'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'use mode => ''text'' or ''hybrid''';
    END IF;
    IF v_mode = 'hybrid' AND v_model IS NULL THEN
        v_mode := 'text';  -- the words alone; the page says so
    END IF;
    IF v_config IS NULL AND v_mode <> 'semantic' THEN
        RAISE EXCEPTION 'search is off on this server (memory.search_config = off)'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF search_messages.query IS NULL THEN
        RAISE EXCEPTION 'query must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(search_messages.query) > 1000 THEN
        RAISE EXCEPTION 'query longer than 1000 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF search_messages."limit" IS NULL OR search_messages."limit" < 1 OR search_messages."limit" > 100 THEN
        RAISE EXCEPTION 'limit must be between 1 and 100, got %', coalesce(search_messages."limit"::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF search_messages.role IS NOT NULL AND search_messages.role NOT IN ('user', 'assistant', 'system', 'tool') THEN
        RAISE EXCEPTION 'unknown role "%"', memory._clip(search_messages.role) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF search_messages.cursor IS NOT NULL THEN
        BEGIN
            v_rank := split_part(search_messages.cursor, '/', 1)::real;
            v_after := split_part(search_messages.cursor, '/', 2)::uuid;
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            RAISE EXCEPTION 'cursor "%" is not a cursor of search_messages', memory._clip(search_messages.cursor)
                USING ERRCODE = 'invalid_parameter_value';
        END;
    END IF;
    IF v_config IS NOT NULL THEN  -- (off: semantic mode only)
        v_query := websearch_to_tsquery(v_config, search_messages.query);
    END IF;
    IF (v_mode = 'text' AND numnode(v_query) = 0) OR btrim(search_messages.query) = '' THEN
        RETURN jsonb_build_object('results', '[]'::jsonb, 'next_cursor', NULL, 'mode', v_mode);
    END IF;
    IF v_mode <> 'text' THEN
        v_embedding := memory._embed_query(search_messages.query, v_model);
        PERFORM memory._raise_error(v_embedding->'error');
    END IF;
    WITH page AS (
        SELECT h.* FROM memory._search_hits(v_query, search_messages.conversation_id, search_messages.agent_id, search_messages.role, search_messages.since, search_messages.until, search_messages.tool, search_messages.has_tool_calls, search_messages."limit", v_rank, v_after) h
         WHERE v_mode = 'text'
        UNION ALL
        SELECT h.* FROM memory._semantic_hits(v_embedding->>'vector', v_model, search_messages.conversation_id, search_messages.agent_id, search_messages.role, search_messages.since, search_messages.until, search_messages.tool, search_messages.has_tool_calls, search_messages."limit", v_rank, v_after) h
         WHERE v_mode = 'semantic'
        UNION ALL
        SELECT h.* FROM memory._hybrid_hits(v_query, v_embedding->>'vector', v_model, search_messages.conversation_id, search_messages.agent_id, search_messages.role, search_messages.since, search_messages.until, search_messages.tool, search_messages.has_tool_calls, search_messages."limit", v_rank, v_after) h
         WHERE v_mode = 'hybrid'
    ), numbered AS (
        -- the page with its conversations' titles and agents, before the JSON is built: on a
        -- Citus cluster the shards answer this part and the coordinator builds the result
        SELECT p.*, c.title, c.agent_id AS conversation_agent_id,
               row_number() OVER (ORDER BY p.rank DESC, p.id) AS n
          FROM page p JOIN memory.conversations c ON c.id = p.conversation_id
    )
    SELECT jsonb_build_object(
               'results', coalesce(jsonb_agg(jsonb_build_object(
                   'conversation_id', x.conversation_id, 'title', x.title, 'agent_id', x.conversation_agent_id,
                   'message_id', x.id, 'seq', x.seq, 'role', x.role, 'created_at', x.created_at, 'rank', x.rank,
                   'snippet', CASE WHEN coalesce(numnode(v_query), 0) > 0 THEN ts_headline(v_config,
                                          left(concat_ws(' ', nullif(x.content, ''), (
                                              SELECT string_agg(concat_ws(' ', call->'function'->>'name', call->'function'->>'arguments',
                                                                          call->>'tool', call->>'input', call->>'output'), ' ')
                                                FROM jsonb_array_elements(coalesce(x.tool_calls, '[]')) AS call)), 20000),
                                          v_query, 'StartSel=**, StopSel=**, MaxWords=30, MinWords=10, MaxFragments=2, FragmentDelimiter=" … "')
                                   -- found by meaning alone (no words of the query): the message's start
                                   ELSE left(x.content, 200) END)
                   ORDER BY x.n) FILTER (WHERE x.n <= search_messages."limit"), '[]'::jsonb),
               'mode', v_mode,
               'next_cursor', (SELECT y.rank::text || '/' || y.id FROM numbered y WHERE y.n = search_messages."limit" AND EXISTS (SELECT 1 FROM numbered z WHERE z.n > search_messages."limit")))
      INTO v_result
      FROM numbered x;
    RETURN v_result;
END $$;

-- Recomputes every message's search_vector in the current memory.search_config (after changing
-- it; 'off' empties them), in batches of `batch` messages; returns how many were updated.
-- Superusers only.
CREATE OR REPLACE FUNCTION memory.reindex_search(batch integer DEFAULT 10000) RETURNS bigint
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
        WITH b AS (SELECT m.id FROM memory.conversation_messages m WHERE m.id > v_last ORDER BY m.id LIMIT greatest(reindex_search.batch, 1)),
             u AS (UPDATE memory.conversation_messages m
                      SET search_vector = memory._search_vector(v_config, m.conversation_id, c.user_id, m.content, m.tool_calls)
                     FROM b, memory.conversations c WHERE m.id = b.id AND c.id = m.conversation_id RETURNING m.id)
        SELECT count(*), (array_agg(u.id ORDER BY u.id DESC))[1] INTO v_n, v_last FROM u;
        EXIT WHEN v_n = 0;
        v_done := v_done + v_n;
    END LOOP;
    RETURN v_done;
END $$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory.reindex_search(integer)
FROM PUBLIC;
