//! Every setting of the extension, defined in `_PG_init`.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

pub static DEFAULT_ENCODING: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"cl100k_base"));
pub static USER_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static TRUST_USER_ID_SETTING: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static USER_ID_ROLES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static JWT_GATEWAY_ROLES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"authenticator"));
pub static LOGIN_USER_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static NODE_SECRET: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CALLER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static MAX_MESSAGE_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(4096);
pub static MAX_TOOL_CALLS: GucSetting<i32> = GucSetting::<i32>::new(128);
pub static MAX_UNREQUESTED_SHARES: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static NOTIFY_MESSAGES: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static MAX_MESSAGES_PER_MINUTE: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static MAX_LLM_TOKENS_PER_DAY: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static MAX_LLM_COST_PER_DAY: GucSetting<f64> = GucSetting::<f64>::new(0.0);
pub static MIN_SUMMARIZE_THRESHOLD: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static PRELOAD_TOKENIZERS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static SUMMARIZE_THRESHOLD: GucSetting<i32> = GucSetting::<i32>::new(6000);
pub static WORKER_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static WORKER_DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
pub static WORKER_NAPTIME: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static WORKER_CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(8);
pub static WORKER_USER_CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(2);
pub static RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static RETENTION_BATCH: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static RETENTION_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static LLM_BASE_URL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"https://api.groq.com/openai/v1"));
pub static SEARCH_CONFIG: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"simple"));
pub static LLM_MODEL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"llama-3.3-70b-versatile"));
pub static LLM_API_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static LLM_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(30_000);
pub static EMBEDDING_MODEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static EMBEDDING_DIMENSIONS: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static EMBEDDING_BATCH: GucSetting<i32> = GucSetting::<i32>::new(64);
pub static EMBEDDING_MIN_SIMILARITY: GucSetting<f64> = GucSetting::<f64>::new(0.0);
pub static EXTRACT_FACTS: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static OTLP_ENDPOINT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static OTLP_CONTENT: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static SUMMARY_MAX_TOKENS: GucSetting<i32> = GucSetting::<i32>::new(500);
pub static SUMMARY_KEEP_TOKENS: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static SUMMARY_BATCH_TOKENS: GucSetting<i32> = GucSetting::<i32>::new(16_000);
pub static MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static RETRY_BACKOFF: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `preloading`: PostgreSQL accepts postmaster-level settings only from a library loaded by
/// shared_preload_libraries; a library loaded later by a backend defines the others only.
pub fn define(preloading: bool) {
    if preloading {
        define_postmaster();
    }
    GucRegistry::define_string_guc(
        c"memory.default_encoding",
        c"Tokenizer of new conversations (cl100k_base, o200k_base, chars4 or a model name).",
        c"",
        &DEFAULT_ENCODING,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.user_id",
        c"User id (uuid) for RLS when no JWT claims are present: for trusted application servers and psql.",
        c"Ignored when memory.trust_user_id_setting is off.",
        &USER_ID,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"memory.trust_user_id_setting",
        c"Whether memory.current_user_id() may use the memory.user_id setting at all.",
        c"Even when on, only logins in memory.user_id_roles (and superusers) may use it.",
        &TRUST_USER_ID_SETTING,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.user_id_roles",
        c"Comma-separated roles whose member logins may assert an identity with memory.user_id.",
        c"For an application server's pooled login. Empty: only superusers.",
        &USER_ID_ROLES,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.jwt_gateway_roles",
        c"Comma-separated roles whose member logins may assert an identity with request.jwt.claims.",
        c"PostgREST/Supabase log in as authenticator. Superusers always may.",
        &JWT_GATEWAY_ROLES,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.login_user_id",
        c"The identity (uuid) bound to a login: ALTER ROLE name SET memory.login_user_id = '...'.",
        c"Overrides claims and memory.user_id; only superusers can set it.",
        &LOGIN_USER_ID,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.node_secret",
        c"Key of the signed caller that memory.pass_caller() hands from a Citus coordinator to its workers.",
        c"The same value on every node, at least 32 characters; in postgresql.conf or with ALTER SYSTEM. Only superusers can read it.",
        &NODE_SECRET,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_string_guc(
        c"memory.caller",
        c"The signed caller memory.pass_caller() wrote for this transaction; wins over every other source of identity.",
        c"Checked against memory.node_secret: a value not written by memory.pass_caller() in this session is an error.",
        &CALLER,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.max_message_size",
        c"Largest message (content, tool calls and ids together) or summary accepted.",
        c"",
        &MAX_MESSAGE_SIZE_KB,
        1,
        65_536,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"memory.max_unrequested_shares",
        c"Shares from one user that take effect without the recipient's consent; further ones wait as offers.",
        c"The recipient accepts offers with memory.accept_shares and declines everything from a user with memory.decline_shares.",
        &MAX_UNREQUESTED_SHARES,
        0,
        100_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.max_tool_calls",
        c"Most tool calls one assistant message may carry.",
        c"",
        &MAX_TOOL_CALLS,
        1,
        10_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.search_config",
        c"Text search configuration of search_messages: simple (no stemming, any language), english, german, ..., or off.",
        c"Messages are indexed with the configuration set when they are stored; after changing it, run memory.reindex_search(). off: no search words are stored and search_messages fails.",
        &SEARCH_CONFIG,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"memory.notify_messages",
        c"NOTIFY memory_messages with the ids of every new message.",
        c"PostgreSQL serialises the commits of all notifying transactions: turn it off for write-heavy servers nobody listens to.",
        &NOTIFY_MESSAGES,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.max_messages_per_minute",
        c"Most messages one user may append per minute, by any route; 0 means no limit.",
        c"Over it an insert fails with SQLSTATE PT429 (HTTP 429 through PostgREST).",
        &MAX_MESSAGES_PER_MINUTE,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.max_llm_tokens_per_day",
        c"Most LLM tokens (as the provider reports them) one user's chat turns and replies may use per UTC day; 0 means no limit.",
        c"Checked before each call: over it memory.chat, request_reply and auto-replied inserts fail with SQLSTATE PT429.",
        &MAX_LLM_TOKENS_PER_DAY,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"memory.max_llm_cost_per_day",
        c"Most US dollars of LLM calls (at memory.model_prices) one user's chat turns and replies may cost per UTC day; 0 means no limit.",
        c"Checked before each call: over it memory.chat, request_reply and auto-replied inserts fail with SQLSTATE PT429. Calls of models without a price cost nothing here.",
        &MAX_LLM_COST_PER_DAY,
        0.0,
        1e12,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.otlp_endpoint",
        c"OpenTelemetry collector (OTLP/HTTP, e.g. http://127.0.0.1:4318) that receives a span per LLM call and per job; empty: no traces.",
        c"Spans are sent as JSON to <endpoint>/v1/traces from threads of their own, after the call; they never delay a turn.",
        &OTLP_ENDPOINT,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"memory.otlp_content",
        c"Whether LLM spans carry the request's messages and the answer (gen_ai.input.messages, gen_ai.output.messages).",
        c"Off by default: traces then hold no conversation content.",
        &OTLP_CONTENT,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.min_summarize_threshold",
        c"Floor under memory.summarize_threshold: a session cannot ask for summaries more often than this.",
        c"",
        &MIN_SUMMARIZE_THRESHOLD,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.summarize_threshold",
        c"Tokens not covered by the newest summary above which a conversation is summarized.",
        c"",
        &SUMMARIZE_THRESHOLD,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    define_worker();
}

fn define_postmaster() {
    GucRegistry::define_bool_guc(
        c"memory.preload_tokenizers",
        c"Build the tokenizers in the postmaster when memory_ext is in shared_preload_libraries.",
        c"Saves ~50-120 ms on the first token count of every connection; costs memory in the postmaster.",
        &PRELOAD_TOKENIZERS,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"memory.worker_enabled",
        c"Start the summary worker when memory_ext is preloaded.",
        c"",
        &WORKER_ENABLED,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.worker_database",
        c"Database the summary worker connects to (where CREATE EXTENSION memory_ext ran).",
        c"",
        &WORKER_DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

/// Settings of the summary worker (read in the postmaster, changed by SIGHUP).
fn define_worker() {
    GucRegistry::define_int_guc(
        c"memory.retention_days",
        c"Conversations not updated for this many days are deleted by the worker; 0 keeps everything.",
        c"In batches of memory.retention_batch conversations, checked every memory.retention_interval seconds; memory.retention_preview() lists what is due.",
        &RETENTION_DAYS,
        0,
        36_500,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.retention_batch",
        c"Conversations one retention job deletes in one transaction.",
        c"",
        &RETENTION_BATCH,
        1,
        100_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.retention_interval",
        c"Seconds between the worker's checks for conversations due for deletion.",
        c"",
        &RETENTION_INTERVAL,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.worker_naptime",
        c"Milliseconds the worker sleeps when the job queue is empty.",
        c"",
        &WORKER_NAPTIME,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.worker_concurrency",
        c"Most LLM calls the background worker has in flight at once (replies and summaries of different conversations).",
        c"Each call waits on a thread of its own; no transaction is open during a call.",
        &WORKER_CONCURRENCY,
        1,
        256,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.worker_user_concurrency",
        c"Most of those calls one user's jobs may hold at once, so that one user cannot take every slot.",
        c"",
        &WORKER_USER_CONCURRENCY,
        1,
        256,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.llm_base_url",
        c"Base URL of the OpenAI-compatible API (…/chat/completions is appended) for summaries, chat turns and replies.",
        c"",
        &LLM_BASE_URL,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"memory.llm_model",
        c"Model of summaries, and of chat turns whose agent names none.",
        c"",
        &LLM_MODEL,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.llm_api_key",
        c"API key for the LLM endpoint; empty means the built-in extractive summarizer.",
        c"Set in postgresql.conf or with ALTER SYSTEM; only superusers can read it.",
        &LLM_API_KEY,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_int_guc(
        c"memory.llm_timeout",
        c"Milliseconds one LLM call may take in all (connect, send, answer).",
        c"Shutdown and postmaster death do not wait for it: the worker watches for both during a call.",
        &LLM_TIMEOUT,
        100,
        600_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"memory.extract_facts",
        c"Whether the worker extracts facts about users from their finished turns (long-term memory).",
        c"On: each turn that ends in a plain assistant answer queues an extract job, one LLM call per job.",
        &EXTRACT_FACTS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"memory.embedding_model",
        c"Embedding model of the provider's /embeddings endpoint; empty (the default) turns embeddings off.",
        c"Set: the worker embeds new messages, and search_messages offers mode => 'semantic' and 'hybrid'.",
        &EMBEDDING_MODEL,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.embedding_dimensions",
        c"Dimensions asked of the embedding model (its `dimensions` parameter); 0 (the default) sends none.",
        c"",
        &EMBEDDING_DIMENSIONS,
        0,
        16_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.embedding_batch",
        c"Most messages one embedding job sends in one call to the provider.",
        c"",
        &EMBEDDING_BATCH,
        1,
        2048,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"memory.embedding_min_similarity",
        c"Semantic and hybrid search leave out messages whose cosine similarity to the query is at or below this.",
        c"A model's unrelated texts sit at its own baseline (often 0.1 to 0.3): raise it to that.",
        &EMBEDDING_MIN_SIMILARITY,
        -1.0,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.summary_max_tokens",
        c"max_tokens of a summary.",
        c"",
        &SUMMARY_MAX_TOKENS,
        16,
        100_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.summary_keep_tokens",
        c"Tokens of the newest messages a summary leaves verbatim (at least the newest message or tool group).",
        c"",
        &SUMMARY_KEEP_TOKENS,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.summary_batch_tokens",
        c"Most stored tokens of messages one summary job reads and sends to the summarizer.",
        c"Longer backlogs are summarized in several progressive steps.",
        &SUMMARY_BATCH_TOKENS,
        100,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.max_attempts",
        c"Attempts per job (every kind) before it is marked failed.",
        c"",
        &MAX_ATTEMPTS,
        1,
        100,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"memory.retry_backoff",
        c"Milliseconds before the first retry of a failed job; doubles with each attempt (Retry-After wins).",
        c"",
        &RETRY_BACKOFF,
        0,
        3_600_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// Bytes of the largest message or summary accepted.
pub fn max_message_bytes() -> i64 {
    i64::from(MAX_MESSAGE_SIZE_KB.get()) * 1024
}

/// The threshold of a conversation whose agent may set its own, never below the operator's floor.
pub fn agent_summarize_threshold(agent: Option<i32>) -> i64 {
    i64::from(agent.unwrap_or_else(|| SUMMARIZE_THRESHOLD.get()).max(MIN_SUMMARIZE_THRESHOLD.get()))
}

pub fn string(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().map(|c| c.to_string_lossy().into_owned()).filter(|s| !s.is_empty())
}
