-- memory_ext 0.2.0 -> 0.3.0
--
-- The schema delta of 0.3.0: what re-running the install script's functions, views, triggers,
-- policies and privileges (scripts/make_upgrade.py) cannot do. What changed:
-- * memory.llm_calls: the worker writes a call's row before the call ('pending') and completes
--   it with the provider's figures afterwards; a call in flight when the worker stopped is
--   'unknown' (the provider may have billed it). The day's token counter follows both writes.
-- * the background worker answers several calls at once (memory.worker_concurrency,
--   memory.worker_user_concurrency: settings only, nothing in the schema) and is registered as
--   "memory_ext worker".
-- * memory.agents.share_config (default off): members of an agent's conversations no longer read
--   its system prompt and tools (the members' policy requires it), and reply jobs a member causes
--   are built without them.
-- * memory.chat's call is charged even when the caller's transaction rolls back: the worker
--   writes it as a 'rolled_back' row, and the daily token limit counts it meanwhile
--   (memory._pending_llm_tokens, memory._token_quota_error); it also counts one message against
--   the per-minute limit (memory._pending_rolled_back_turns, memory._add_minute_messages).
-- * internal implementations behind public entry points are no longer executable by PUBLIC: the
--   entry points (list_conversations, share_conversation, … erase_user) are SECURITY DEFINER and
--   do nothing but call them (privileges only: replayed).
-- * memory.summary_tokens(content, encoding): a summary's framed tokens (new, replayed).
-- * functions only (replayed, nothing below): memory.list_agents(); create_agent's settings
--   default to NULL (the table's defaults); memory._identity, _agent_applies and _clip (one home
--   each); the worker's queue functions (_claim_job, _finish_job, _retry_job, _requeue_jobs,
--   _recover_jobs); bodies name their parameters instead of $N.
-- * memory.continue_chat checks that the caller may write the answer (and that the conversation
--   is not archived) before it calls the LLM.
-- * the bulk routes count against memory.max_messages_per_minute in memory._import_messages
--   itself (with the 100,000-message cap and the archive check), and fork_conversation counts its
--   copies (memory._take_message_quotas).
-- * memory.max_message_size bounds every value users store (memory._check_size): message
--   metadata and names, a conversation's title and metadata, templates (a new trigger).
-- * search: the lexeme naming a message's conversation holds a space, which no text can produce
--   (a message reading "conv<hex>" could pose as another conversation's); the stored messages'
--   lexemes are rewritten here, a statement over the whole messages table.
-- * memory._get_shared_conversation: a share link's expiry is checked against the clock, not the
--   reader's transaction start.
-- * a job belongs to whoever caused it (memory._enqueue_job: the requester, or the author of the
--   message that queued it), and request_summary checks the requester's daily token limit.
-- * retention: memory.retention_days is a ceiling that an agent's retention_days may only shorten
--   (memory._retention_due).
-- * consent: a transfer is an offer (memory.conversation_transfers) that the recipient accepts or
--   declines (accept_transfer, decline_transfer, list_transfer_offers); shares beyond
--   memory.max_unrequested_shares from one owner wait as offers (conversation_members.accepted_at
--   NULL; accept_shares, decline_shares, list_share_offers). Existing memberships are accepted.
-- * messages have an author (conversation_messages.author_id, set by the insert trigger from the
--   caller's identity): usage_daily counts messages for their author, erase_user removes what a
--   user wrote in others' conversations. Messages stored before 0.3.0 have no author.
-- * search: each message's vector also names its conversation's owner (memory._owner_lexeme), so
--   a search costs the same however many conversations the caller has; shared conversations are
--   searched through their owners' lexemes. list_conversations runs as the owner
--   (memory._list_conversations): its sources are the read rule itself, and under RLS a page of
--   a user with many conversations sorted all of them, and every shared row was checked against
--   the caller's whole list of shared conversations.
-- * cost in money: memory.model_prices (US dollars per million tokens per model and period, kept
--   by the operator; memory.seed_model_prices() adds common models' list prices), each LLM call's
--   cost_usd at its model's price when written, the day's cost per user (user_usage.day_cost_usd)
--   and its limit memory.max_llm_cost_per_day; usage_daily and agent_performance gain cost_usd,
--   and memory.conversation_costs is new. Calls made before 0.3.0 have no cost.
-- * analytics: memory.message_days (messages, tokens, tool calls and last activity per
--   conversation, UTC day and author): a view over memory.message_days_rollup, which the worker
--   keeps up to each conversation's mark (memory.message_days_marks), plus the messages after the
--   mark added up on read, so that appends write no daily figure; and
--   memory.llm_call_days (calls, tokens and cost per user, UTC day, agent, model and
--   conversation), kept by a trigger on llm_calls; both filled here from the stored rows.
--   usage_daily, conversation_activity and conversation_costs read them instead of aggregating
--   messages and calls (same columns, same figures).
-- * recall: pgvector is now required (CREATE EXTENSION vector first, or ALTER EXTENSION … UPDATE
--   fails and changes nothing). memory.message_embeddings holds one vector per message and
--   embedding model, written by the worker's new 'embed' jobs (memory.embedding_model);
--   search_messages gains `mode` ('text', 'semantic', 'hybrid'), so its old signature is dropped.
--   Embedding calls are llm_calls of kind 'embed'. build_context gains `recall` (a share of the
--   budget for older relevant messages), so its old signature is dropped too.
-- * long-term memory: memory.facts (statements about a user, per user and optionally per agent,
--   with their sources and a supersede chain), extracted from finished turns by the worker's new
--   'extract' jobs (memory.extract_facts; progress per conversation in memory.fact_progress) or
--   added by the user (add_fact, edit_fact, delete_fact, list_facts); embedded by the embed jobs
--   and recalled by build_context's `recall`. memory.agents.recall: the share of an agent's
--   turns that recall reserves (default 0). erase_user removes a user's facts.
-- * branches: edit_message and regenerate keep what they replace, as an inactive branch in
--   memory.branch_messages; list_branches and switch_branch move between branches. The active
--   branch stays in conversation_messages: existing conversations are single-branch trees with
--   the same windows. rewind_conversation still deletes.
-- * appends: the row-level insert triggers of conversation_messages are Rust
--   (memory._message_before_insert and _message_before_insert_write change from plpgsql to c),
--   bracketed by two new statement-level triggers (messages_statement_begin, messages_statement_end)
--   so that a statement checks access and locks a conversation once, not once per row; the
--   per-minute limit moves to a trigger of its own (messages_before_insert_quota, only when a limit
--   applies). A statement's first row of a conversation counts itself in the UPDATE that locks
--   the conversation; memory._messages_after_insert (now c) settles the rest from the transition
--   table and sends the NOTIFYs; the summary, auto-reply, embed and extract checks move to
--   memory._messages_after_insert_checks (trigger messages_after_insert_checks, only when
--   memory._append_follow_up_due()). Functions and triggers only: replayed, nothing below.
\echo Use "ALTER EXTENSION memory_ext UPDATE TO '0.3.0'" to load this file. \quit

-- Schema ------------------------------------------------------------------------------------------

ALTER TABLE memory.llm_calls DROP CONSTRAINT llm_calls_status_check;

ALTER TABLE memory.llm_calls ADD CONSTRAINT llm_calls_status_check
    CHECK (status IN ('ok', 'discarded', 'error', 'pending', 'unknown', 'rolled_back'));

-- an agent's prompt and tools are its owner's unless shared
ALTER TABLE memory.agents ADD COLUMN share_config boolean NOT NULL DEFAULT false;

DROP TRIGGER llm_calls_after_insert ON memory.llm_calls;

DROP FUNCTION memory._llm_call_after_insert();

-- consent: shares beyond memory.max_unrequested_shares wait for their recipient; those made so
-- far were in effect, and stay so
ALTER TABLE memory.conversation_members ADD COLUMN accepted_at timestamptz;

UPDATE memory.conversation_members SET accepted_at = created_at;

CREATE INDEX conversation_members_accepted_idx ON memory.conversation_members (user_id) WHERE accepted_at IS NOT NULL;

CREATE TABLE memory.conversation_transfers (
    conversation_id uuid PRIMARY KEY REFERENCES memory.conversations (id) ON DELETE CASCADE,
    from_user_id    uuid NOT NULL,
    to_user_id      uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX conversation_transfers_to_idx ON memory.conversation_transfers (to_user_id, created_at);

CREATE INDEX conversation_transfers_from_idx ON memory.conversation_transfers (from_user_id, created_at);

SELECT pg_catalog.pg_extension_config_dump('memory.conversation_transfers', '');

ALTER TABLE memory.conversation_transfers ENABLE ROW LEVEL SECURITY;

-- who wrote each message (NULL for those stored before)
ALTER TABLE memory.conversation_messages ADD COLUMN author_id uuid;

-- _search_vector takes the conversation's owner (for its search lexeme)
DROP FUNCTION memory._search_vector(regconfig, uuid, text, jsonb);

-- cost in money
ALTER TABLE memory.llm_calls ADD COLUMN cost_usd numeric;

ALTER TABLE memory.user_usage ADD COLUMN day_cost_usd numeric NOT NULL DEFAULT 0;

CREATE TABLE memory.model_prices (
    model                  text NOT NULL CHECK (model <> ''),
    input_usd_per_million  numeric NOT NULL CHECK (input_usd_per_million >= 0),
    output_usd_per_million numeric NOT NULL CHECK (output_usd_per_million >= 0),
    valid_from             timestamptz NOT NULL DEFAULT '-infinity',
    valid_to               timestamptz NOT NULL DEFAULT 'infinity',
    source                 text,
    PRIMARY KEY (model, valid_from),
    CONSTRAINT model_prices_period_check CHECK (valid_to > valid_from)
);

SELECT pg_catalog.pg_extension_config_dump('memory.model_prices', '');

ALTER TABLE memory.model_prices ENABLE ROW LEVEL SECURITY;

-- analytics: the messages' daily figures (filled below, once the functions are replayed)
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

CREATE INDEX message_days_rollup_day_idx ON memory.message_days_rollup (day);

CREATE TABLE memory.message_days_marks (
    conversation_id uuid PRIMARY KEY REFERENCES memory.conversations (id) ON DELETE CASCADE,
    through_seq     bigint NOT NULL
);

SELECT pg_catalog.pg_extension_config_dump('memory.message_days_rollup', '');

SELECT pg_catalog.pg_extension_config_dump('memory.message_days_marks', '');

ALTER TABLE memory.message_days_rollup ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.message_days_marks ENABLE ROW LEVEL SECURITY;

-- analytics: the LLM calls' daily figures (filled below)
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

SELECT pg_catalog.pg_extension_config_dump('memory.llm_call_days', '');

ALTER TABLE memory.llm_call_days ENABLE ROW LEVEL SECURITY;

-- recall: the messages' embeddings, written by 'embed' jobs; facts, written by 'extract' jobs
ALTER TABLE memory.jobs DROP CONSTRAINT jobs_kind_check;

ALTER TABLE memory.jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('summary', 'reply', 'retention', 'embed', 'extract'));

ALTER TABLE memory.llm_calls DROP CONSTRAINT llm_calls_kind_check;

ALTER TABLE memory.llm_calls ADD CONSTRAINT llm_calls_kind_check CHECK (kind IN ('summary', 'chat', 'reply', 'embed', 'extract'));

CREATE TABLE memory.message_embeddings (
    message_id      uuid NOT NULL REFERENCES memory.conversation_messages (id) ON DELETE CASCADE,
    conversation_id uuid NOT NULL REFERENCES memory.conversations (id) ON DELETE CASCADE,
    model           text NOT NULL,
    embedding       vector NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, model)
);

CREATE INDEX message_embeddings_conversation_idx ON memory.message_embeddings (conversation_id, model);

SELECT pg_catalog.pg_extension_config_dump('memory.message_embeddings', '');

ALTER TABLE memory.message_embeddings ENABLE ROW LEVEL SECURITY;

DROP FUNCTION memory.search_messages(text, uuid, uuid, text, timestamptz, timestamptz, text, boolean, integer, text);

-- build_context gains `recall`
DROP FUNCTION memory.build_context(uuid, integer, text);

-- long-term memory: facts about a user, and an agent's recall share for its turns
ALTER TABLE memory.agents ADD COLUMN recall real NOT NULL DEFAULT 0 CHECK (recall BETWEEN 0 AND 0.5);

CREATE TABLE memory.facts (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL DEFAULT memory.current_user_id(),
    agent_id           uuid REFERENCES memory.agents (id) ON DELETE CASCADE,
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

CREATE INDEX facts_user_idx ON memory.facts (user_id, created_at);

CREATE INDEX facts_conversation_idx ON memory.facts (conversation_id) WHERE conversation_id IS NOT NULL;

CREATE INDEX facts_superseded_by_idx ON memory.facts (superseded_by) WHERE superseded_by IS NOT NULL;

CREATE TABLE memory.fact_progress (
    conversation_id uuid PRIMARY KEY REFERENCES memory.conversations (id) ON DELETE CASCADE,
    through_seq     bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

SELECT pg_catalog.pg_extension_config_dump('memory.facts', '');

SELECT pg_catalog.pg_extension_config_dump('memory.fact_progress', '');

ALTER TABLE memory.facts ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.fact_progress ENABLE ROW LEVEL SECURITY;

-- branches: the messages of inactive branches
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

ALTER TABLE memory.branch_messages ENABLE ROW LEVEL SECURITY;

-- @replay

-- Data --------------------------------------------------------------------------------------------

-- every stored message's conversation lexeme in the new, unforgeable form, and its owner's lexeme
UPDATE memory.conversation_messages m
   SET search_vector = ts_delete(m.search_vector, 'conv' || encode(uuid_send(m.conversation_id), 'hex'))
                       || array_to_tsvector(ARRAY[memory._conversation_lexeme(m.conversation_id), memory._owner_lexeme(c.user_id)])
  FROM memory.conversations c
 WHERE c.id = m.conversation_id AND m.search_vector IS NOT NULL;

-- the daily figures of every stored message
SELECT memory._count_message_days(c.id) FROM memory.conversations c;

INSERT INTO memory.llm_call_days (user_id, day, agent_id, model, conversation_id, calls, prompt_tokens, completion_tokens,
                                  priced_calls, cost_usd)
SELECT l.user_id, (l.created_at AT TIME ZONE 'UTC')::date, l.agent_id, l.model, l.conversation_id, count(*),
       coalesce(sum(l.prompt_tokens), 0), coalesce(sum(l.completion_tokens), 0), count(l.cost_usd), coalesce(sum(l.cost_usd), 0)
  FROM memory.llm_calls l
 GROUP BY 1, 2, 3, 4, 5;
