-- Every table of memory_ext, with its indexes and constraints, and the composite types functions
-- return. Everything lives in schema memory. This is schema: a change ships in the release's
-- delta (sql/deltas/), never by editing a released script. Row-level security and table
-- privileges are in policies.sql.
--
-- An agent is a row of memory.agents: system prompt, model, tools, context and reply budgets,
-- summarize threshold, auto_reply. conversations.agent_id stays a plain uuid; an agents row
-- applies to a conversation when its id is the conversation's agent_id AND it belongs to the
-- conversation's owner. (So nobody can give someone else's conversations a system prompt by
-- creating an agent with a known id, nor read another user's agent by naming it in a
-- conversation of their own.)

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

-- fastupdate off: every append with tool calls probes this index, and a probe would otherwise
-- read the whole pending list of recent entries (quadratic over a bulk INSERT of tool calls).
CREATE INDEX conversation_messages_tool_keys_idx ON memory.conversation_messages
    USING gin (memory._tool_keys(conversation_id, tool_calls, tool_call_id))
    WITH (fastupdate = off)
    WHERE tool_calls IS NOT NULL OR tool_call_id IS NOT NULL;

-- A small pending list (512 kB instead of 4 MB): every search reads all of it, so new entries are
-- merged into the index in small steps instead of waiting for (auto)vacuum.
CREATE INDEX conversation_messages_search_idx ON memory.conversation_messages USING gin (search_vector)
    WITH (gin_pending_list_limit = 512);

-- Finds the results of a deleted call (they go with it).
CREATE INDEX conversation_messages_tool_call_id_idx ON memory.conversation_messages (conversation_id, tool_call_id)
    WHERE tool_call_id IS NOT NULL;

-- What the worker's embed jobs stored: one vector per message and embedding model (pgvector's
-- `vector`, of the model's dimensions), for search_messages' semantic and hybrid modes. Derived
-- data that goes with its message (a rewind, a deletion, erase_user); users never read it
-- directly: memory._semantic_hits serves it within the read rule.
CREATE TABLE memory.message_embeddings (
    message_id      uuid NOT NULL REFERENCES memory.conversation_messages (id) ON DELETE CASCADE,
    conversation_id uuid NOT NULL REFERENCES memory.conversations (id) ON DELETE CASCADE,
    model           text NOT NULL,
    embedding       vector NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, model)
);

-- a scope's vectors: the conversations a caller reads, then the model
CREATE INDEX message_embeddings_conversation_idx ON memory.message_embeddings (conversation_id, model);

-- The messages per conversation, UTC day and author, for the analytics views (usage_daily,
-- conversation_activity, through the view memory.message_days): a conversation's messages up to
-- its mark (message_days_marks.through_seq) are added up here by the background worker, a few
-- seconds after they are written; the view adds the few after the mark on read. So an append
-- writes no daily figure, and a dashboard reads days, not messages. Derived data: dumped with the
-- rest (a restore runs without triggers), never written by users.
CREATE TABLE memory.message_days_rollup (
    conversation_id uuid NOT NULL REFERENCES memory.conversations (id) ON DELETE CASCADE,
    day             date NOT NULL,
    author_id       uuid,
    messages        bigint NOT NULL,
    tokens          bigint NOT NULL,
    tool_calls      bigint NOT NULL,
    last_activity   timestamptz NOT NULL,
    CONSTRAINT message_days_rollup_key UNIQUE NULLS NOT DISTINCT (conversation_id, day, author_id)
);

-- an operator's dashboard: the days of a period
CREATE INDEX message_days_rollup_day_idx ON memory.message_days_rollup (day);

-- How far message_days_rollup has counted each conversation: its messages with seq <= through_seq
-- (no row: none). Moved by the worker's rollup, and by the routes that count a whole conversation.
CREATE TABLE memory.message_days_marks (
    conversation_id uuid PRIMARY KEY REFERENCES memory.conversations (id) ON DELETE CASCADE,
    through_seq     bigint NOT NULL
);

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
-- to do ('summary', 'reply', 'retention', 'embed', 'extract'); `payload` carries what a kind needs beyond its
-- conversation; `user_id` is whose work it is (the worker serves users in turn; the nil uuid for
-- the server's own retention jobs, which have no conversation). At most one pending job of a kind
-- per conversation.
CREATE TABLE memory.jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('summary', 'reply', 'retention', 'embed', 'extract')),
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

SELECT pg_catalog.pg_extension_config_dump('memory.message_days_rollup', '');

SELECT pg_catalog.pg_extension_config_dump('memory.message_days_marks', '');

SELECT pg_catalog.pg_extension_config_dump('memory.message_embeddings', '');

SELECT pg_catalog.pg_extension_config_dump('memory.conversation_summaries', '');

SELECT pg_catalog.pg_extension_config_dump('memory.jobs', '');

SELECT pg_catalog.pg_extension_config_dump('memory.conversation_members', '');

SELECT pg_catalog.pg_extension_config_dump('memory.conversation_transfers', '');

-- and the identity sequences, so ids continue after the restored ones
SELECT pg_catalog.pg_extension_config_dump('memory.conversation_summaries_id_seq', '');

SELECT pg_catalog.pg_extension_config_dump('memory.jobs_id_seq', '');

-- A row of list_conversations: the conversation and what the caller is to it ('owner', 'editor'
-- or 'viewer').
CREATE TYPE memory.listed_conversation AS (
    id            uuid,
    agent_id      uuid,
    user_id       uuid,
    title         text,
    encoding      text,
    total_tokens  bigint,
    message_count integer,
    last_seq      bigint,
    metadata      jsonb,
    created_at    timestamptz,
    updated_at    timestamptz,
    archived_at   timestamptz,
    access        text
);

CREATE TABLE memory.agents (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL DEFAULT memory.current_user_id(),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    system_prompt       text,
    -- NULL: the operator's memory.llm_model
    model               text CHECK (length(model) BETWEEN 1 AND 200),
    -- OpenAI tool definitions, validated by the trigger below
    tools               jsonb NOT NULL DEFAULT '[]',
    max_context_tokens  integer NOT NULL DEFAULT 8000 CHECK (max_context_tokens BETWEEN 1 AND 10000000),
    reply_max_tokens    integer NOT NULL DEFAULT 2000 CHECK (reply_max_tokens >= 1),
    temperature         real NOT NULL DEFAULT 0.7 CHECK (temperature BETWEEN 0 AND 2),
    -- NULL: memory.summarize_threshold (never below memory.min_summarize_threshold)
    summarize_threshold integer CHECK (summarize_threshold >= 1),
    auto_reply          boolean NOT NULL DEFAULT false,
    metadata            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- NULL or 0: memory.retention_days; n: deleted n days (or sooner when the operator's period is shorter)
    -- after their last update
    retention_days      integer CHECK (retention_days >= 0),
    -- whether members of the agent's conversations (viewers, editors) may read its system_prompt
    -- and tools, and whether their turns and reply jobs are built with them: off, only the owner's
    -- are (members get windows without the private parts)
    share_config        boolean NOT NULL DEFAULT false,
    -- the share of the window its chat turns and reply jobs reserve for recall (facts about the
    -- user and older relevant messages, see build_context's `recall`); 0: none
    recall              real NOT NULL DEFAULT 0 CHECK (recall BETWEEN 0 AND 0.5),
    CONSTRAINT agents_reply_fits_check CHECK (reply_max_tokens < max_context_tokens)
);

CREATE INDEX agents_user_idx ON memory.agents (user_id, created_at);

-- One row per LLM call of any kind. Written by memory_ext only; owners read their own.
CREATE TABLE memory.llm_calls (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id     uuid REFERENCES memory.conversations (id) ON DELETE SET NULL,
    user_id             uuid NOT NULL,
    agent_id            uuid,
    job_id              bigint,
    kind                text NOT NULL CHECK (kind IN ('summary', 'chat', 'reply', 'embed', 'extract')),
    model               text NOT NULL,
    -- as the provider reported them (NULL when it did not)
    prompt_tokens       integer CHECK (prompt_tokens >= 0),
    completion_tokens   integer CHECK (completion_tokens >= 0),
    total_tokens        integer CHECK (total_tokens >= 0),
    -- the prompt as memory_ext counted it (window plus tools), before sending
    local_prompt_tokens integer CHECK (local_prompt_tokens >= 0),
    latency_ms          double precision CHECK (latency_ms >= 0),
    -- ok: the answer was used; discarded: answered, but the conversation changed meanwhile;
    -- error: no usable answer (error says why); pending: the worker's call in flight (its row is
    -- written before the call); unknown: the worker stopped while it was in flight, so the
    -- provider may have answered and billed it; rolled_back: memory.chat's call whose turn the
    -- caller's transaction rolled back (written afterwards by the worker: billed all the same)
    status              text NOT NULL CHECK (status IN ('ok', 'discarded', 'error', 'pending', 'unknown', 'rolled_back')),
    error               text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    -- in US dollars, at the model's price when the row was written (memory.model_prices); NULL
    -- when no price was known for the model (see memory._llm_call_cost)
    cost_usd            numeric
);

CREATE INDEX llm_calls_user_idx ON memory.llm_calls (user_id, created_at);

CREATE INDEX llm_calls_conversation_idx ON memory.llm_calls (conversation_id) WHERE conversation_id IS NOT NULL;

-- The LLM calls per UTC day, user, agent, model and conversation, for the analytics views
-- (usage_daily, conversation_costs): kept by a trigger on memory.llm_calls, which subtracts a
-- row's old figures and adds its new ones on every write (a call completed by the worker, its
-- conversation deleted, a user erased). cost_usd sums the priced_calls (those with a cost).
CREATE TABLE memory.llm_call_days (
    user_id           uuid NOT NULL,
    day               date NOT NULL,
    agent_id          uuid,
    model             text NOT NULL,
    conversation_id   uuid,
    calls             bigint NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    priced_calls      bigint NOT NULL,
    cost_usd          numeric NOT NULL,
    CONSTRAINT llm_call_days_key UNIQUE NULLS NOT DISTINCT (user_id, day, agent_id, model, conversation_id)
);

CREATE INDEX llm_call_days_day_idx ON memory.llm_call_days (day);

CREATE INDEX llm_call_days_conversation_idx ON memory.llm_call_days (conversation_id) WHERE conversation_id IS NOT NULL;

-- Per-user counters of the limits: one row per user, updated in place (O(1) per message; only
-- the same user's transactions wait for each other).
CREATE TABLE memory.user_usage (
    user_id         uuid PRIMARY KEY,
    minute_start    timestamptz NOT NULL,
    minute_messages integer NOT NULL,
    day_start       date NOT NULL,
    day_tokens      bigint NOT NULL,
    -- the day's LLM cost in US dollars (calls without a known price count nothing)
    day_cost_usd    numeric NOT NULL DEFAULT 0
);

-- Prices of LLM models in US dollars per million tokens, kept by the operator (memory_ext only
-- reads them; memory.seed_model_prices() adds a list of common models). A call's cost uses the
-- row of its model whose period [valid_from, valid_to) holds the call's time; periods of one
-- model never overlap.
CREATE TABLE memory.model_prices (
    model                  text NOT NULL CHECK (model <> ''),
    input_usd_per_million  numeric NOT NULL CHECK (input_usd_per_million >= 0),
    output_usd_per_million numeric NOT NULL CHECK (output_usd_per_million >= 0),
    valid_from             timestamptz NOT NULL DEFAULT '-infinity',
    valid_to               timestamptz NOT NULL DEFAULT 'infinity',
    -- where the price comes from, e.g. a provider's price page and its date
    source                 text,
    PRIMARY KEY (model, valid_from),
    CONSTRAINT model_prices_period_check CHECK (valid_to > valid_from)
);

SELECT pg_catalog.pg_extension_config_dump('memory.agents', '');

SELECT pg_catalog.pg_extension_config_dump('memory.llm_calls', '');

SELECT pg_catalog.pg_extension_config_dump('memory.llm_calls_id_seq', '');

SELECT pg_catalog.pg_extension_config_dump('memory.llm_call_days', '');

SELECT pg_catalog.pg_extension_config_dump('memory.model_prices', '');

-- ---- templates -------------------------------------------------------------------------------

-- A reusable start of a conversation: messages (as an import takes them) and an agent. Owned by
-- a user like agents; create_conversation(..., template_id => …) starts a conversation with
-- them, validated like any append. One name per user: saving under a name again replaces it.
CREATE TABLE memory.conversation_templates (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL DEFAULT memory.current_user_id(),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    agent_id   uuid,
    messages   jsonb NOT NULL CHECK (jsonb_typeof(messages) = 'array' AND jsonb_array_length(messages) <= 1000),
    metadata   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT conversation_templates_name_key UNIQUE (user_id, name)
);

SELECT pg_catalog.pg_extension_config_dump('memory.conversation_templates', '');

-- ---- share links -------------------------------------------------------------------------------

-- A read-only view of a conversation for whoever holds the token, up to a fixed message. Only the
-- token's SHA-256 is stored: the token itself is shown once, by create_share_link.
CREATE TABLE memory.share_links (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL REFERENCES memory.conversations (id) ON DELETE CASCADE,
    token_hash      bytea NOT NULL UNIQUE,
    up_to_seq       bigint NOT NULL CHECK (up_to_seq >= 0),
    expires_at      timestamptz,
    revoked_at      timestamptz,
    created_by      uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX share_links_conversation_idx ON memory.share_links (conversation_id, created_at);

SELECT pg_catalog.pg_extension_config_dump('memory.share_links', '');

-- ---- facts (long-term memory) ------------------------------------------------------------------

-- Short statements about a user ("is allergic to peanuts"), extracted by the worker's extract
-- jobs from the user's finished turns (memory.extract_facts) or added by the user, and recalled
-- into windows by similarity (build_context's `recall`). A user's own: only they read, change
-- or delete them. `agent_id` NULL: about the user for every agent; set: for that agent's
-- conversations only. A later fact that contradicts an earlier one supersedes it: the earlier
-- row stays, with `superseded_by` (NULL when the fact was dropped without a successor) and
-- `superseded_at`; only facts with no superseded_at are recalled. `embedding` is the vector of
-- `content` in `embedding_model`, written by the worker and cleared when the content changes.
CREATE TABLE memory.facts (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL DEFAULT memory.current_user_id(),
    agent_id           uuid REFERENCES memory.agents (id) ON DELETE CASCADE,
    -- where it was learnt (NULL: added by the user, or that conversation is gone)
    conversation_id    uuid REFERENCES memory.conversations (id) ON DELETE SET NULL,
    source_message_ids uuid[] NOT NULL DEFAULT '{}',
    content            text NOT NULL CHECK (length(content) BETWEEN 1 AND 1000 AND btrim(content) <> ''),
    superseded_by      uuid REFERENCES memory.facts (id) ON DELETE SET NULL,
    superseded_at      timestamptz,
    embedding          vector,
    embedding_model    text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- a user's facts (list_facts, recall, erasure)
CREATE INDEX facts_user_idx ON memory.facts (user_id, created_at);

-- the foreign keys' ON DELETE SET NULL
CREATE INDEX facts_conversation_idx ON memory.facts (conversation_id) WHERE conversation_id IS NOT NULL;

CREATE INDEX facts_superseded_by_idx ON memory.facts (superseded_by) WHERE superseded_by IS NOT NULL;

-- How far the extract jobs have read each conversation: messages up to through_seq were sent.
CREATE TABLE memory.fact_progress (
    conversation_id uuid PRIMARY KEY REFERENCES memory.conversations (id) ON DELETE CASCADE,
    through_seq     bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

SELECT pg_catalog.pg_extension_config_dump('memory.facts', '');

SELECT pg_catalog.pg_extension_config_dump('memory.fact_progress', '');

-- ---- branches ----------------------------------------------------------------------------------

-- The messages of a conversation's inactive branches (see branches.sql; the active branch is
-- memory.conversation_messages). Read with the conversation; written only by edit_message,
-- regenerate and switch_branch; the owner may delete them (pruning a branch).
CREATE TABLE memory.branch_messages (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES memory.conversations (id) ON DELETE CASCADE,
    -- the message before it on its branch (NULL: the branch's path starts with it)
    parent_id       uuid,
    -- its seq when it was last active
    seq             bigint NOT NULL,
    -- its row as it was, without the search words (recomputed when it comes back)
    message         jsonb NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX branch_messages_conversation_idx ON memory.branch_messages (conversation_id, parent_id);

SELECT pg_catalog.pg_extension_config_dump('memory.branch_messages', '');
