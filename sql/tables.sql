-- Tables of memory_ext. Everything lives in schema memory.

CREATE TABLE memory.conversations (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id      uuid NOT NULL,
    user_id       uuid NOT NULL DEFAULT memory.current_user_id(),
    title         text,
    encoding      text NOT NULL DEFAULT memory.default_encoding(),
    total_tokens  bigint NOT NULL DEFAULT 0,
    message_count integer NOT NULL DEFAULT 0,
    -- the highest seq ever given out: appends take the next one under the row lock, in O(1)
    last_seq      bigint NOT NULL DEFAULT 0,
    metadata      jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT conversations_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object'),
    -- set by memory.archive_conversation: hidden from list_conversations, refuses new messages
    archived_at   timestamptz
);
CREATE INDEX conversations_user_agent_idx ON memory.conversations (user_id, agent_id);
CREATE INDEX conversations_user_updated_idx ON memory.conversations (user_id, updated_at DESC);

CREATE TABLE memory.conversation_messages (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL REFERENCES memory.conversations (id) ON DELETE CASCADE,
    seq             bigint NOT NULL,
    role            text NOT NULL,
    content         text NOT NULL,
    name            text,
    tool_calls      jsonb,
    tool_call_id    text,
    token_count     integer NOT NULL,
    metadata        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- build_context walks this index backwards: newest first, only the window's rows.
    CONSTRAINT conversation_messages_seq_key UNIQUE (conversation_id, seq),
    CONSTRAINT conversation_messages_role_check CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    CONSTRAINT conversation_messages_tool_calls_check CHECK (tool_calls IS NULL OR role = 'assistant'),
    CONSTRAINT conversation_messages_tool_call_id_check CHECK ((role = 'tool') = (tool_call_id IS NOT NULL)),
    -- a client's key for one append: a retry with the same key returns the stored message
    idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    -- what search_messages finds: see memory._search_vector
    search_vector   tsvector,
    -- who wrote it: the caller's identity when it was appended (the requester, for a reply the
    -- worker wrote; NULL for a role that bypasses RLS writing without an identity). Analytics
    -- count a message for its author, erase_user removes what its user wrote in others'
    -- conversations.
    author_id       uuid
);
CREATE UNIQUE INDEX conversation_messages_idempotency_key_idx ON memory.conversation_messages (conversation_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Tool keys of a message: "<conversation>/c/<id>" for each OpenAI call it makes, "…/g/<id>" for
-- each combined record, "…/r/<id>" for the call a tool message answers. One GIN lookup then
-- answers "was this call made / answered before in this conversation?", however long the
-- conversation and however common the id elsewhere.
-- Runs in index maintenance (as whoever inserts, and as the superuser during REINDEX): its
-- search_path is pinned so that no one's functions or operators can stand in for the built-ins.
CREATE OR REPLACE FUNCTION memory._tool_keys(conversation_id uuid, tool_calls jsonb, tool_call_id text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg($1::text || CASE WHEN call ? 'function' THEN '/c/' ELSE '/g/' END || (call->>'id')), '{}')
           || CASE WHEN $3 IS NULL THEN '{}'::text[] ELSE ARRAY[$1::text || '/r/' || $3] END
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof($2) = 'array' THEN $2 ELSE '[]' END) AS call
$$;
-- fastupdate off: every append with tool calls probes this index, and a probe would otherwise
-- read the whole pending list of recent entries (quadratic over a bulk INSERT of tool calls).
CREATE INDEX conversation_messages_tool_keys_idx ON memory.conversation_messages
    USING gin (memory._tool_keys(conversation_id, tool_calls, tool_call_id))
    WITH (fastupdate = off)
    WHERE tool_calls IS NOT NULL OR tool_call_id IS NOT NULL;
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
    IF $1 IS NULL THEN  -- memory.search_config = 'off'
        RETURN NULL;
    END IF;
    IF jsonb_typeof($5) = 'array' THEN
        SELECT string_agg(concat_ws(' ', c.call->'function'->>'name', c.call->'function'->>'arguments', c.call->>'tool',
                                    c.call->>'input', c.call->>'output'), ' ')
          INTO v_calls FROM jsonb_array_elements($5) AS c(call);
    END IF;
    RETURN to_tsvector($1, left(concat_ws(' ', $4, v_calls), 200000))
           || array_to_tsvector(ARRAY[memory._conversation_lexeme($2), memory._owner_lexeme($3)]);
END;
$$;
-- A small pending list (512 kB instead of 4 MB): every search reads all of it, so new entries are
-- merged into the index in small steps instead of waiting for (auto)vacuum.
CREATE INDEX conversation_messages_search_idx ON memory.conversation_messages USING gin (search_vector)
    WITH (gin_pending_list_limit = 512);
-- Finds the results of a deleted call (they go with it).
CREATE INDEX conversation_messages_tool_call_id_idx ON memory.conversation_messages (conversation_id, tool_call_id)
    WHERE tool_call_id IS NOT NULL;

CREATE TABLE memory.conversation_summaries (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id    uuid NOT NULL REFERENCES memory.conversations (id) ON DELETE CASCADE,
    covers_through_seq bigint NOT NULL CHECK (covers_through_seq >= 0),
    content            text NOT NULL CHECK (content <> ''),
    -- framed tokens of the summary system message build_context emits, in the conversation's encoding
    token_count        integer NOT NULL,
    -- stored tokens of the messages it covers: should_summarize stays O(1)
    covered_tokens     bigint NOT NULL DEFAULT 0,
    model              text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversation_summaries_newest_idx ON memory.conversation_summaries (conversation_id, covers_through_seq DESC);

-- The background work queue, claimed by the worker with FOR UPDATE SKIP LOCKED. `kind` says what
-- to do ('summary', 'reply', 'retention'); `payload` carries what a kind needs beyond its
-- conversation; `user_id` is whose work it is (the worker serves users in turn; the nil uuid for
-- the server's own retention jobs, which have no conversation). At most one pending job of a kind
-- per conversation.
CREATE TABLE memory.jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('summary', 'reply', 'retention')),
    conversation_id uuid REFERENCES memory.conversations (id) ON DELETE CASCADE,
    user_id         uuid,
    payload         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    run_after       timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX jobs_one_pending_idx ON memory.jobs (kind, conversation_id)
    WHERE status IN ('queued', 'running');
-- a user's next due job: the worker's claim probes this once per waiting user
CREATE INDEX jobs_user_due_idx ON memory.jobs (user_id, run_after, id) WHERE status = 'queued';
-- a conversation's jobs: its newest job's status, and the cascade when it is deleted
CREATE INDEX jobs_conversation_idx ON memory.jobs (conversation_id, id);

-- When the worker last took a job of each user, and how many queued jobs each user has (kept by
-- a trigger on jobs): the worker takes the next job from the waiting user served longest ago, so
-- that one user's many jobs cannot starve everyone else's, and a claim costs one probe per
-- waiting user, whatever the length of the queue.
CREATE TABLE memory.queue_turns (
    user_id         uuid PRIMARY KEY,
    -- NULL: never served yet (served first)
    last_claimed_at timestamptz,
    queued          integer NOT NULL DEFAULT 0
);
CREATE INDEX queue_turns_waiting_idx ON memory.queue_turns (last_claimed_at NULLS FIRST) WHERE queued > 0;

-- Who else may use a conversation: viewers read it, editors also append to it (see access.sql).
-- owner_id repeats the conversation's owner so that the table's own policy needs no look-up of
-- conversations (whose policy reads this table).
CREATE TABLE memory.conversation_members (
    conversation_id uuid NOT NULL REFERENCES memory.conversations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL,
    role            text NOT NULL CHECK (role IN ('viewer', 'editor')),
    owner_id        uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id),
    -- when the member accepted (or the share took effect at once: see share_conversation);
    -- NULL while the share is an offer, which gives no access
    accepted_at     timestamptz
);
CREATE INDEX conversation_members_user_idx ON memory.conversation_members (user_id, role);
-- what the authorization rule reads (memory._shared_with): a user's accepted shares only, however
-- many offers wait
CREATE INDEX conversation_members_accepted_idx ON memory.conversation_members (user_id) WHERE accepted_at IS NOT NULL;

-- A transfer of ownership offered to to_user_id, until it accepts or declines (or the owner
-- withdraws it). Nothing of the conversation is the recipient's before it accepts.
CREATE TABLE memory.conversation_transfers (
    conversation_id uuid PRIMARY KEY REFERENCES memory.conversations (id) ON DELETE CASCADE,
    from_user_id    uuid NOT NULL,
    to_user_id      uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversation_transfers_to_idx ON memory.conversation_transfers (to_user_id, created_at);
CREATE INDEX conversation_transfers_from_idx ON memory.conversation_transfers (from_user_id, created_at);

-- pg_dump keeps user data of extension tables only when they are registered.
SELECT pg_catalog.pg_extension_config_dump('memory.conversations', '');
SELECT pg_catalog.pg_extension_config_dump('memory.conversation_messages', '');
SELECT pg_catalog.pg_extension_config_dump('memory.conversation_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('memory.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('memory.conversation_members', '');
SELECT pg_catalog.pg_extension_config_dump('memory.conversation_transfers', '');
-- and the identity sequences, so ids continue after the restored ones
SELECT pg_catalog.pg_extension_config_dump('memory.conversation_summaries_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('memory.jobs_id_seq', '');
