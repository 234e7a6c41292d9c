-- History features: export and import, fork and rewind.
--
-- export_conversation and import_conversation are SECURITY INVOKER: RLS decides what is read,
-- and an import appends through the same triggers as add_message (same validation, counting and
-- limits). fork and rewind copy or cut whole runs of rows; their work is done by SECURITY
-- DEFINER helpers that check the authorization rule first (fork: read the source; rewind: write
-- the conversation).

-- ---- export ------------------------------------------------------------------------------------

-- Markdown helpers. Every message body goes into a fenced block whose fence is longer than any
-- run of backticks in it, so no content (code fences, HTML, headings) can end the block or be
-- rendered as markup; one-line fields (title, names, ids) are escaped instead.
CREATE OR REPLACE FUNCTION memory._md_fenced(p_text text, p_info text DEFAULT '') RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT f || p_info || E'\n' || p_text || E'\n' || f
      FROM (SELECT repeat('`', greatest(3, coalesce((SELECT max(length(m[1])) FROM regexp_matches(p_text, '(`+)', 'g') AS m), 0) + 1)) AS f) x
$$;

CREATE OR REPLACE FUNCTION memory._md_inline(p_text text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT regexp_replace(
               replace(replace(replace(regexp_replace(left(coalesce(p_text, ''), 500), '[\r\n\t]+', ' ', 'g'),
                                       '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
               '([\\`*_{}\[\]()#+!|~-])', '\\\1', 'g')
$$;

CREATE OR REPLACE FUNCTION memory._md_message(p_m memory.conversation_messages) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT concat_ws(E'\n\n',
        format('### %s · #%s · %s%s', p_m.role, p_m.seq, to_char(p_m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
               CASE WHEN p_m.name IS NOT NULL THEN ' · ' || memory._md_inline(p_m.name) ELSE '' END)
        || CASE WHEN p_m.tool_call_id IS NOT NULL THEN E'\n\nResult of tool call ' || memory._md_inline(p_m.tool_call_id) ELSE '' END,
        CASE WHEN p_m.content <> '' OR p_m.tool_calls IS NULL THEN memory._md_fenced(p_m.content, 'text') END,
        (SELECT string_agg(
                    CASE WHEN call ? 'function' THEN
                        format('**Tool call** %s (%s)', memory._md_inline(call->'function'->>'name'), memory._md_inline(call->>'id'))
                        || E'\n\n' || memory._md_fenced(coalesce(call->'function'->>'arguments', ''), 'json')
                    ELSE
                        format('**Tool call** %s (%s)', memory._md_inline(call->>'tool'), memory._md_inline(call->>'id'))
                        || E'\n\n' || memory._md_fenced(jsonb_pretty(coalesce(call->'input', '{}')), 'json')
                        || E'\n\n**Result**\n\n'
                        || memory._md_fenced(CASE WHEN jsonb_typeof(call->'output') = 'string' THEN call->>'output'
                                                  ELSE coalesce(jsonb_pretty(call->'output'), '') END, 'text')
                    END, E'\n\n' ORDER BY n)
           FROM jsonb_array_elements(p_m.tool_calls) WITH ORDINALITY AS t(call, n)))
$$;

-- The json export of a conversation, of its messages up to p_upto (NULL: all), as whoever calls
-- it may read them (share links call it as the owner). PL/pgSQL: Citus cannot plan a SQL
-- function's parameterised query over distributed tables (docs/scaling.md).
CREATE OR REPLACE FUNCTION memory._export_json(p_conv memory.conversations, p_upto bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT jsonb_build_object(
        'format', 'memory_ext.conversation',
        'version', 1,
        'conversation', jsonb_build_object(
            'id', p_conv.id, 'agent_id', p_conv.agent_id, 'title', p_conv.title, 'encoding', p_conv.encoding,
            'metadata', p_conv.metadata,
            'message_count', CASE WHEN p_upto IS NULL THEN p_conv.message_count ELSE x.n END,
            'total_tokens', CASE WHEN p_upto IS NULL THEN p_conv.total_tokens ELSE coalesce(x.t, 0) END,
            'created_at', p_conv.created_at, 'updated_at', p_conv.updated_at),
        'messages', coalesce(x.messages, '[]'),
        'summaries', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'id', s.id, 'covers_through_seq', s.covers_through_seq, 'content', s.content, 'model', s.model,
                       'token_count', s.token_count, 'covered_tokens', s.covered_tokens, 'created_at', s.created_at)
                       ORDER BY s.covers_through_seq, s.id)
              FROM memory.conversation_summaries s
             WHERE s.conversation_id = p_conv.id AND (p_upto IS NULL OR s.covers_through_seq <= p_upto)), '[]'))
      FROM (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                       'id', m.id, 'seq', m.seq, 'role', m.role, 'content', m.content, 'name', m.name,
                       'tool_calls', m.tool_calls, 'tool_call_id', m.tool_call_id, 'metadata', m.metadata,
                       'token_count', m.token_count, 'created_at', m.created_at, 'idempotency_key', m.idempotency_key))
                       ORDER BY m.seq) AS messages,
                   count(*) AS n, sum(m.token_count) AS t
              FROM memory.conversation_messages m
             WHERE m.conversation_id = p_conv.id AND (p_upto IS NULL OR m.seq <= p_upto)) x);
END $$;

-- format: 'json' (lossless and versioned: the conversation, its messages with seq, tool calls,
-- metadata and timestamps, and its summaries; what import_conversation reads), 'markdown' (for
-- people, as a JSON string: `#>> '{}'` gives the text), 'openai' ({"messages": [...]}: the whole
-- conversation as a /chat/completions payload, the agent's system prompt first; one line of a
-- JSONL fine-tuning file).
CREATE OR REPLACE FUNCTION memory.export_conversation(id uuid, format text DEFAULT 'json') RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_conv memory.conversations;
BEGIN
    IF export_conversation.id IS NULL OR export_conversation.format IS NULL THEN
        RAISE EXCEPTION 'id and format must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF export_conversation.format NOT IN ('json', 'markdown', 'openai') THEN
        RAISE EXCEPTION 'unknown export format "%"', memory._clip(export_conversation.format)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use json, markdown or openai.';
    END IF;
    SELECT c.* INTO v_conv FROM memory.conversations c WHERE c.id = export_conversation.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % does not exist', export_conversation.id USING ERRCODE = 'no_data_found';
    END IF;
    IF export_conversation.format = 'openai' THEN
        RETURN jsonb_build_object('messages', memory.build_context(export_conversation.id, 2147483647)->'messages');
    END IF;
    IF export_conversation.format = 'markdown' THEN
        RETURN to_jsonb(concat_ws(E'\n\n',
            '# ' || CASE WHEN coalesce(v_conv.title, '') = '' THEN 'Conversation' ELSE memory._md_inline(v_conv.title) END,
            format('%s messages · %s tokens (%s) · started %s', v_conv.message_count, v_conv.total_tokens, v_conv.encoding,
                   to_char(v_conv.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')),
            (SELECT string_agg(memory._md_message(m), E'\n\n' ORDER BY m.seq)
               FROM memory.conversation_messages m WHERE m.conversation_id = export_conversation.id)) || E'\n');
    END IF;
    RETURN memory._export_json(v_conv, NULL);
END $$;

-- ---- import ------------------------------------------------------------------------------------

-- The summaries' created_at an export carries (callers may not write that column). Only for the
-- caller's own conversation. The conversation's updated_at is not restored: the import is its
-- latest activity, and a caller who could set it could keep a conversation from ever aging.
CREATE OR REPLACE FUNCTION memory._import_summary_times(p_conversation_id uuid, p_times jsonb) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    UPDATE memory.conversation_summaries s SET created_at = (t.value #>> '{}')::timestamptz
      FROM memory.conversations c, jsonb_each(coalesce(p_times, '{}')) t
     WHERE c.id = p_conversation_id AND c.user_id = memory.current_user_id()
       AND s.conversation_id = c.id AND s.id::text = t.key AND jsonb_typeof(t.value) = 'string';
$$;

-- The bulk path of an import: the messages of a conversation import_conversation just created
-- (the caller's, still empty), checked as a set with the same functions the insert triggers use
-- (message_tokens validates and counts, _check_message_limits bounds sizes; tool calls unique,
-- every result answering an earlier OpenAI call, once; the table's constraints), then written in
-- one INSERT with the triggers off and the counters (and the daily figures) set once. It only
-- ever refuses more than the per-row path: import_conversation falls back to that path whenever
-- this one fails, so the rules and errors are add_message's.
CREATE OR REPLACE FUNCTION memory._import_messages(p_conversation_id uuid, p_messages jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET session_replication_role = replica AS $$
DECLARE
    v_encoding text;
    v_config   regconfig := memory._search_config()::regconfig;
    v_me       uuid := memory.current_user_id();
BEGIN
    SELECT c.encoding INTO v_encoding FROM memory.conversations c
     WHERE c.id = p_conversation_id AND c.user_id = v_me AND c.last_seq = 0
       AND c.archived_at IS NULL
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation % is not an empty, open conversation of the caller', p_conversation_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- the cap and the per-minute limit are checked here, so that no route to this function skips them
    IF jsonb_typeof(p_messages) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'messages must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_array_length(p_messages) > 100000 THEN
        RAISE EXCEPTION 'an import holds at most 100000 messages, got %', jsonb_array_length(p_messages)
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Import the rest with add_message.';
    END IF;
    PERFORM memory._take_message_quotas(jsonb_array_length(p_messages));
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_messages) AS t(e)
                WHERE jsonb_typeof(t.e) <> 'object' OR jsonb_typeof(t.e->'content') NOT IN ('string', 'null')) THEN
        RAISE EXCEPTION 'a message must be an object whose content is a string' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM memory._check_message_limits(
                octet_length(coalesce(t.e->>'content', '')) + coalesce(pg_column_size(nullif(t.e->'tool_calls', 'null')), 0)
                + coalesce(octet_length(t.e->>'tool_call_id'), 0)
                + coalesce(pg_column_size(nullif(t.e->'metadata', 'null')), 0) + coalesce(octet_length(t.e->>'name'), 0),
                CASE WHEN jsonb_typeof(t.e->'tool_calls') = 'array' THEN jsonb_array_length(t.e->'tool_calls') END)
       FROM jsonb_array_elements(p_messages) AS t(e);
    IF EXISTS (
        WITH calls AS (
            SELECT call->>'id' AS id, t.n, call ? 'function' AS openai
              FROM jsonb_array_elements(p_messages) WITH ORDINALITY AS t(e, n),
                   jsonb_array_elements(CASE WHEN jsonb_typeof(t.e->'tool_calls') = 'array' THEN t.e->'tool_calls' ELSE '[]' END) AS call),
        results AS (
            SELECT t.e->>'tool_call_id' AS id, t.n
              FROM jsonb_array_elements(p_messages) WITH ORDINALITY AS t(e, n)
             WHERE t.e->>'role' = 'tool')
        SELECT 1 FROM calls GROUP BY id HAVING count(*) > 1
        UNION ALL
        SELECT 1 FROM results r LEFT JOIN calls c ON c.id = r.id AND c.openai AND c.n < r.n WHERE c.id IS NULL
        UNION ALL
        SELECT 1 FROM results GROUP BY id HAVING count(*) > 1) THEN
        RAISE EXCEPTION 'a tool call id used twice, or a tool result without an earlier call or answered twice'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO memory.conversation_messages
          (conversation_id, seq, role, content, name, tool_calls, tool_call_id, token_count, metadata, created_at,
           idempotency_key, search_vector, author_id)
    SELECT p_conversation_id, t.n, t.e->>'role', coalesce(t.e->>'content', ''), t.e->>'name', nullif(t.e->'tool_calls', 'null'),
           t.e->>'tool_call_id',
           memory.message_tokens(t.e->>'role', coalesce(t.e->>'content', ''), nullif(t.e->'tool_calls', 'null'),
                                 t.e->>'name', v_encoding, t.e->>'tool_call_id'),
           nullif(t.e->'metadata', 'null'), coalesce((t.e->>'created_at')::timestamptz, now()), t.e->>'idempotency_key',
           memory._search_vector(v_config, p_conversation_id, v_me, coalesce(t.e->>'content', ''),
                                 nullif(t.e->'tool_calls', 'null')),
           v_me
      FROM jsonb_array_elements(p_messages) WITH ORDINALITY AS t(e, n)
     ORDER BY t.n;
    UPDATE memory.conversations c
       SET message_count = x.n, total_tokens = x.t, last_seq = x.n, updated_at = now()
      FROM (SELECT count(*) AS n, coalesce(sum(m.token_count), 0) AS t
              FROM memory.conversation_messages m WHERE m.conversation_id = p_conversation_id) x
     WHERE c.id = p_conversation_id;
    PERFORM memory._count_message_days(p_conversation_id);
END $$;

-- Appends a whole array of messages to an empty conversation of the caller (an import, a
-- template): the bulk path first (one statement; the per-minute limit counts every message); when
-- it refuses anything, every message goes through add_message's triggers instead, in one
-- subtransaction around the loop (not one per message), and the first one refused fails the whole
-- call with its index (0-based) in the message and the trigger's SQLSTATE.
CREATE OR REPLACE FUNCTION memory._append_all(p_conversation_id uuid, p_messages jsonb, p_what text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_bulk  boolean;
    v_i     integer := -1;
    v_m     jsonb;
    v_state text;
    v_text  text;
    v_hint  text;
BEGIN
    BEGIN
        PERFORM memory._import_messages(p_conversation_id, p_messages);
        v_bulk := true;
    EXCEPTION WHEN OTHERS THEN
        v_bulk := false;
    END;
    IF v_bulk THEN
        RETURN;
    END IF;
    BEGIN
        FOR v_m IN SELECT e FROM jsonb_array_elements(p_messages) AS e LOOP
            v_i := v_i + 1;
            IF jsonb_typeof(v_m) <> 'object' OR jsonb_typeof(v_m->'content') NOT IN ('string', 'null') THEN
                RAISE EXCEPTION 'a message must be an object whose content is a string'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            INSERT INTO memory.conversation_messages
                (conversation_id, role, content, name, tool_calls, tool_call_id, metadata, created_at, idempotency_key, seq, token_count)
            VALUES (p_conversation_id, v_m->>'role', coalesce(v_m->>'content', ''), v_m->>'name', nullif(v_m->'tool_calls', 'null'),
                    v_m->>'tool_call_id', nullif(v_m->'metadata', 'null'), (v_m->>'created_at')::timestamptz,
                    v_m->>'idempotency_key', 0, 0);
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_text = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        IF v_state IN ('22P02', '22007', '22008') THEN
            v_state := '22023';
        END IF;
        RAISE EXCEPTION 'message % of the %: %', v_i, p_what, v_text
            USING ERRCODE = v_state, HINT = coalesce(nullif(v_hint, ''), 'Nothing was written.');
    END;
END $$;

-- data: an export in format json (version 1), {"messages": [...]} (the openai export, a JSONL
-- line), or a plain OpenAI messages array. A new conversation of the caller is created (the
-- export's ids are not reused); agent_id and title override the export's. All or nothing: the
-- first message that add_message would refuse fails the import with its index (0-based) in the
-- message and add_message's SQLSTATE.
CREATE OR REPLACE FUNCTION memory.import_conversation(data jsonb, agent_id uuid DEFAULT NULL, title text DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_conv     jsonb := '{}';
    v_messages jsonb;
    v_summaries jsonb := '[]';
    v_id       uuid;
    v_agent    uuid;
    v_i        integer := -1;
    v_state    text;
    v_text     text;
    v_times    jsonb := '{}';
    v_sid      bigint;
    v_s        jsonb;
BEGIN
    IF import_conversation.data IS NULL THEN
        RAISE EXCEPTION 'data must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM memory._identity();
    IF jsonb_typeof(import_conversation.data) = 'array' THEN
        v_messages := import_conversation.data;
    ELSIF jsonb_typeof(import_conversation.data) = 'object' AND import_conversation.data ? 'format' THEN
        IF import_conversation.data->>'format' IS DISTINCT FROM 'memory_ext.conversation' OR (import_conversation.data->>'version') IS DISTINCT FROM '1' THEN
            RAISE EXCEPTION 'unsupported export: format "%" version %', memory._clip(import_conversation.data->>'format'), memory._clip(import_conversation.data->>'version')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'This version reads format memory_ext.conversation version 1, {"messages": [...]} or an array of messages.';
        END IF;
        v_conv := coalesce(import_conversation.data->'conversation', '{}');
        v_messages := import_conversation.data->'messages';
        v_summaries := coalesce(import_conversation.data->'summaries', '[]');
    ELSIF jsonb_typeof(import_conversation.data) = 'object' AND import_conversation.data ? 'messages' THEN
        v_messages := import_conversation.data->'messages';
    END IF;
    IF jsonb_typeof(v_messages) IS DISTINCT FROM 'array' OR jsonb_typeof(v_conv) <> 'object'
       OR jsonb_typeof(v_summaries) <> 'array' THEN
        RAISE EXCEPTION 'data is not an export of memory_ext nor an array of messages'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass export_conversation(id, ''json'') output, {"messages": [...]} or [{"role": …, "content": …}, …].';
    END IF;
    IF jsonb_array_length(v_messages) > 100000 THEN
        RAISE EXCEPTION 'an import holds at most 100000 messages, got %', jsonb_array_length(v_messages)
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Import the rest with add_message.';
    END IF;
    BEGIN
        v_agent := coalesce(import_conversation.agent_id, (v_conv->>'agent_id')::uuid, '00000000-0000-0000-0000-000000000000');
        INSERT INTO memory.conversations AS c (agent_id, title, metadata, encoding, created_at)
        VALUES (v_agent, coalesce(import_conversation.title, v_conv->>'title'), coalesce(v_conv->'metadata', '{}'), v_conv->>'encoding',
                (v_conv->>'created_at')::timestamptz)
        RETURNING c.id INTO v_id;
    EXCEPTION WHEN invalid_text_representation OR datetime_field_overflow OR invalid_datetime_format THEN
        GET STACKED DIAGNOSTICS v_text = MESSAGE_TEXT;
        RAISE EXCEPTION 'the conversation of the import: %', v_text USING ERRCODE = 'invalid_parameter_value';
    END;
    PERFORM memory._append_all(v_id, v_messages, 'import');
    -- Summaries cover messages by seq: the import numbers messages 1..n, so a summary that covered
    -- the export's seq s covers the imported messages whose exported seq is at most s.
    v_i := -1;
    BEGIN
        FOR v_s IN SELECT e FROM jsonb_array_elements(v_summaries) AS e LOOP
            v_i := v_i + 1;
            INSERT INTO memory.conversation_summaries AS s (conversation_id, covers_through_seq, content, model)
            VALUES (v_id,
                    (SELECT count(*) FROM jsonb_array_elements(v_messages) AS m
                      WHERE (m->>'seq')::bigint <= (v_s->>'covers_through_seq')::bigint),
                    v_s->>'content', coalesce(v_s->>'model', 'import'))
            RETURNING s.id INTO v_sid;
            v_times := v_times || jsonb_build_object(v_sid::text, v_s->'created_at');
        END LOOP;
        PERFORM memory._import_summary_times(v_id, v_times);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_text = MESSAGE_TEXT;
        RAISE EXCEPTION 'summary % of the import: %', v_i, v_text
            USING ERRCODE = CASE WHEN v_state LIKE '22%' OR v_state LIKE '23%' THEN '22023' ELSE v_state END;
    END;
    -- the bulk path wrote no job: the threshold check of the whole history, once
    IF memory.should_summarize(v_id) THEN
        PERFORM memory.request_summary(v_id);
    END IF;
    RETURN v_id;
END $$;

-- ---- fork and rewind -----------------------------------------------------------------------------

-- A hint when cutting a conversation after p_at would separate a tool call (at or before p_at)
-- from a result after it; NULL when the cut is clean. Called by the definer helpers below (no
-- RLS), so that the GIN index of tool keys finds each call.
CREATE OR REPLACE FUNCTION memory._tool_group_cut(p_conversation_id uuid, p_at bigint) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
    SELECT format('the tool call at seq %s has its result at seq %s', c.seq, r.seq)
      FROM memory.conversation_messages r
      CROSS JOIN LATERAL (
            SELECT m.seq FROM memory.conversation_messages m
             WHERE (m.tool_calls IS NOT NULL OR m.tool_call_id IS NOT NULL)
               AND memory._tool_keys(m.conversation_id, m.tool_calls, m.tool_call_id)
                   && ARRAY[r.conversation_id::text || '/c/' || r.tool_call_id]
             LIMIT 1) c
     WHERE r.conversation_id = p_conversation_id AND r.seq > p_at AND r.tool_call_id IS NOT NULL
       AND c.seq <= p_at
     ORDER BY r.seq
     LIMIT 1
$$;

-- The whole fork, as the owner with triggers off: the rows copied were validated and counted
-- when they were appended (same encoding, so the same token counts), and the counters (and the
-- daily figures) are set once. Triggers off also means no NOTIFY and no jobs for the copy.
CREATE OR REPLACE FUNCTION memory._fork_conversation(p_source uuid, p_at bigint, p_title text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET session_replication_role = replica AS $$
DECLARE
    v_user uuid := memory.current_user_id();
    v_src  memory.conversations;
    v_at   bigint := p_at;
    v_cut  text;
    v_id   uuid := gen_random_uuid();
    -- the copies keep their words and their authors; their conversation's and owner's lexemes are
    -- the new one's
    v_from text[];
    v_to   text[] := ARRAY[memory._conversation_lexeme(v_id), memory._owner_lexeme(v_user)];
BEGIN
    PERFORM memory._identity();
    PERFORM memory._require(p_source, 'read');
    -- KEY SHARE: the source cannot be deleted under the copy; appends may go on (the copy ends at v_at)
    SELECT c.* INTO v_src FROM memory.conversations c WHERE c.id = p_source FOR KEY SHARE;
    v_from := ARRAY[memory._conversation_lexeme(p_source), memory._owner_lexeme(v_src.user_id)];
    v_at := coalesce(v_at, v_src.last_seq);
    IF v_at < 0 OR v_at > v_src.last_seq THEN
        RAISE EXCEPTION 'at_seq % is outside the conversation (0..%)', v_at, v_src.last_seq
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the copies count against the caller's per-minute limit like appends
    PERFORM memory._take_message_quotas(v_at::integer);
    v_cut := memory._tool_group_cut(p_source, v_at);
    IF v_cut IS NOT NULL THEN
        RAISE EXCEPTION 'cannot fork at seq %: %', v_at, v_cut
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Fork before the tool call or after its last result: a call is kept with its results.';
    END IF;
    INSERT INTO memory.conversations (id, agent_id, user_id, title, encoding, total_tokens, message_count, last_seq,
                                      metadata, created_at, updated_at)
    VALUES (v_id, v_src.agent_id, v_user, coalesce(p_title, v_src.title), v_src.encoding, 0, 0, 0,
            v_src.metadata || jsonb_build_object('forked_from', jsonb_build_object('conversation_id', p_source, 'at_seq', v_at)),
            now(), now());
    WITH copied AS (
        INSERT INTO memory.conversation_messages
              (id, conversation_id, seq, role, content, name, tool_calls, tool_call_id, token_count, metadata,
               created_at, idempotency_key, search_vector, author_id)
        SELECT gen_random_uuid(), v_id, row_number() OVER (ORDER BY m.seq), m.role, m.content, m.name, m.tool_calls,
               m.tool_call_id, m.token_count, m.metadata, m.created_at, m.idempotency_key,
               ts_delete(m.search_vector, v_from) || array_to_tsvector(v_to), m.author_id
          FROM memory.conversation_messages m
         WHERE m.conversation_id = p_source AND m.seq <= v_at
        RETURNING token_count)
    UPDATE memory.conversations c
       SET message_count = x.n, total_tokens = x.t, last_seq = x.n
      FROM (SELECT count(*) AS n, coalesce(sum(token_count), 0) AS t FROM copied) x
     WHERE c.id = v_id;
    PERFORM memory._count_message_days(v_id);
    -- the summaries that cover no more than the fork, renumbered like the messages
    INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, token_count, covered_tokens,
                                               model, created_at)
    SELECT v_id, k.n, s.content, s.token_count, k.t, s.model, s.created_at
      FROM memory.conversation_summaries s
      CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(m.token_count), 0) AS t
                            FROM memory.conversation_messages m
                           WHERE m.conversation_id = p_source AND m.seq <= s.covers_through_seq) k
     WHERE s.conversation_id = p_source AND s.covers_through_seq <= v_at
     ORDER BY s.id;
    RETURN v_id;
END $$;

-- A new conversation of the caller with messages 1..at_seq of a conversation the caller can read
-- (default: all of them), the summaries that cover no more than that, the same agent and
-- encoding, and metadata.forked_from = {conversation_id, at_seq}. Messages are numbered 1..n in
-- the copy. An at_seq that would separate a tool call from its results is refused (22023).
CREATE OR REPLACE FUNCTION memory.fork_conversation(id uuid, at_seq bigint DEFAULT NULL, title text DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF fork_conversation.id IS NULL THEN
        RAISE EXCEPTION 'id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN memory._fork_conversation(fork_conversation.id, fork_conversation.at_seq, fork_conversation.title);
END $$;

-- The whole rewind, as the owner: pending jobs first (a summary or reply the worker is writing
-- for the removed messages waits for this transaction, then finds its job gone and discards
-- its answer), then the conversation's lock, then the messages and the summaries after to_seq.
CREATE OR REPLACE FUNCTION memory._rewind_conversation(p_id uuid, p_to bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_cut  text;
    v_gone integer;
BEGIN
    -- removing messages is the owner's (editors append only)
    PERFORM memory._require(p_id, 'manage');
    DELETE FROM memory.jobs j WHERE j.conversation_id = p_id AND j.status IN ('queued', 'running');
    PERFORM 1 FROM memory.conversations c WHERE c.id = p_id FOR NO KEY UPDATE;
    v_cut := memory._tool_group_cut(p_id, p_to);
    IF v_cut IS NOT NULL THEN
        RAISE EXCEPTION 'cannot rewind to seq %: %', p_to, v_cut
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Rewind to before the tool call, or keep its results: a call is removed with its results.';
    END IF;
    DELETE FROM memory.conversation_messages m WHERE m.conversation_id = p_id AND m.seq > p_to;
    GET DIAGNOSTICS v_gone = ROW_COUNT;
    DELETE FROM memory.conversation_summaries s WHERE s.conversation_id = p_id AND s.covers_through_seq > p_to;
    RETURN v_gone;
END $$;

-- Removes the messages after to_seq ("edit and resend", "regenerate the last reply"), the
-- summaries that covered them and the conversation's pending summary and reply jobs; returns
-- how many messages went. Totals stay exact; seq keeps counting from the highest ever given (the
-- next message after a rewind does not reuse a removed seq). Refuses to separate a tool call
-- from its results (22023).
CREATE OR REPLACE FUNCTION memory.rewind_conversation(id uuid, to_seq bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF rewind_conversation.id IS NULL OR rewind_conversation.to_seq IS NULL THEN
        RAISE EXCEPTION 'id and to_seq must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF rewind_conversation.to_seq < 0 THEN
        RAISE EXCEPTION 'to_seq must be 0 or more, got %', rewind_conversation.to_seq USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN memory._rewind_conversation(rewind_conversation.id, rewind_conversation.to_seq);
END $$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._tool_group_cut(uuid, bigint),
    memory._fork_conversation(uuid, bigint, text),
    memory._rewind_conversation(uuid, bigint)
FROM PUBLIC;
