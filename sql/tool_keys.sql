-- The function behind the tool-call index of conversation_messages (tables.sql): created first,
-- because the index is.

-- Tool keys of a message: "<conversation>/c/<id>" for each OpenAI call it makes, "…/g/<id>" for
-- each combined record, "…/r/<id>" for the call a tool message answers. One GIN lookup then
-- answers "was this call made / answered before in this conversation?", however long the
-- conversation and however common the id elsewhere.
-- Runs in index maintenance (as whoever inserts, and as the superuser during REINDEX): its
-- search_path is pinned so that no one's functions or operators can stand in for the built-ins.
CREATE OR REPLACE FUNCTION memory._tool_keys(conversation_id uuid, tool_calls jsonb, tool_call_id text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(_tool_keys.conversation_id::text || CASE WHEN call ? 'function' THEN '/c/' ELSE '/g/' END || (call->>'id')), '{}')
           || CASE WHEN _tool_keys.tool_call_id IS NULL THEN '{}'::text[] ELSE ARRAY[_tool_keys.conversation_id::text || '/r/' || _tool_keys.tool_call_id] END
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(_tool_keys.tool_calls) = 'array' THEN _tool_keys.tool_calls ELSE '[]' END) AS call
$$;
