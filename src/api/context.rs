//! `build_context` and `build_context_from`: the window algorithm of
//! `core::window` over rows read newest-first through the (conversation_id, seq) index.

use std::collections::{HashSet, VecDeque};

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{JsonB, PgBuiltInOids, PgOid, PgSqlErrorCode, Uuid};

use super::stored::{kept_plan, message_row, MESSAGE_COLUMNS, NEWEST_SUMMARY, NEWEST_SUMMARY_BEFORE_0_2};
use crate::core::chat::{parse_messages_json, REPLY_PRIMING};
use crate::core::recall::{self, Candidate, Fact};
use crate::core::tokenizer::Encoding;
use crate::core::turn::{
    context_budget, request_body, tools_tokens, TurnSettings, DEFAULT_MAX_CONTEXT_TOKENS, DEFAULT_REPLY_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
};
use crate::core::window::{self, Params, Row, RowSource, SliceSource, Summary, Window};
use crate::gucs;
use crate::sql_error::{fail, interrupt, required, spi_failed, OrRaise};

const UUID: PgOid = PgOid::BuiltIn(PgBuiltInOids::UUIDOID);
const INT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8OID);

// Keyset pages with a LIMIT: the planner always walks the (conversation_id, seq) index
// backwards, and stops after the page.
fn rows_sql() -> String {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM memory.conversation_messages \
         WHERE conversation_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
    )
}

/// Rows of one conversation, newest first, fetched in growing batches so that only the window
/// (plus the rest of its last batch) is read.
struct IndexSource<'c> {
    client: &'c SpiClient<'c>,
    conversation_id: Uuid,
    batch: i64,
    before_seq: i64,
    pending: VecDeque<Row>,
    done: bool,
}

impl IndexSource<'_> {
    fn fetch(&mut self) {
        let table = self
            .client
            .select(
                kept_plan(self.client, &rows_sql(), &[UUID, INT8, INT8]).unwrap_or_else(|e| spi_failed(e)),
                None,
                &[self.conversation_id.into(), self.before_seq.into(), self.batch.into()],
            )
            .unwrap_or_else(|e| spi_failed(e));
        if (table.len() as i64) < self.batch {
            self.done = true;
        }
        for r in table {
            // Stored rows were validated on insert; a failure here is raised.
            let row = message_row(&r).unwrap_or_else(|e| spi_failed(e)).or_raise();
            self.before_seq = row.seq;
            self.pending.push_back(row);
        }
        self.batch = (self.batch * 2).min(4096);
    }
}

impl RowSource for IndexSource<'_> {
    fn next_row(&mut self) -> Option<Row> {
        if self.pending.is_empty() && !self.done {
            self.fetch();
        }
        self.pending.pop_front()
    }

    fn count_between(&mut self, lo: i64, hi: i64) -> i64 {
        self.client
            .select(
                "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = $1 AND seq > $2 AND seq < $3",
                None,
                &[self.conversation_id.into(), lo.into(), hi.into()],
            )
            .and_then(|t| t.first().get_one::<i64>())
            .unwrap_or_else(|e| spi_failed(e))
            .unwrap_or(0)
    }
}

fn check_budget(max_tokens: Option<i32>) -> i64 {
    let max = required(max_tokens, "max_tokens");
    if max <= 0 {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("max_tokens must be positive, got {max}"));
    }
    i64::from(max)
}

/// A stored conversation with the settings of its agent (the defaults when it has none).
pub struct Conversation {
    pub id: Uuid,
    pub encoding: Encoding,
    pub total_tokens: i64,
    pub total_rows: i64,
    pub last_seq: i64,
    pub owner: Option<Uuid>,
    /// The agents row that applies, if any.
    pub agent: Option<Uuid>,
    /// Whether the agent's owner lets members' turns use its system prompt and tools.
    pub agent_config_shared: bool,
    /// The share of its turns' windows the agent reserves for recall (0: none).
    pub recall: f64,
    pub settings: TurnSettings,
}

impl Conversation {
    /// The agent's settings without its private parts (system prompt, tools), for a turn that
    /// someone other than the agent's owner caused, unless the owner shares them.
    pub fn for_caller(mut self, caller: Uuid) -> Conversation {
        if self.owner != Some(caller) && !self.agent_config_shared {
            self.settings.system_prompt = None;
            self.settings.tools = serde_json::Value::Array(vec![]);
        }
        self
    }

    /// Tokens of the agent's tool definitions in this conversation's encoding.
    pub fn tools_tokens(&self) -> i64 {
        tools_tokens(&self.settings.tools, self.encoding)
    }

    /// The window a turn sends: the agent's budget minus the reply's room and the tools.
    pub fn turn_budget(&self) -> i64 {
        self.budget_beside(self.tools_tokens())
    }

    fn budget_beside(&self, tools_tokens: i64) -> i64 {
        context_budget(&self.settings, tools_tokens)
            .unwrap_or_else(|m| fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, m))
    }
}

/// What a turn sends to the LLM: the agent's window and the `/chat/completions` request around it.
/// One definition for memory.chat and the worker's reply jobs.
pub struct TurnRequest {
    pub window: Window,
    pub budget: i64,
    pub tools_tokens: i64,
    pub body: serde_json::Value,
}

impl TurnRequest {
    /// `user`: whose facts recall may bring in (None: the caller's identity).
    pub fn new(client: &SpiClient, conv: &Conversation, user: Option<Uuid>) -> TurnRequest {
        let tools_tokens = conv.tools_tokens();
        let budget = conv.budget_beside(tools_tokens);
        let (window, _) =
            window_with_recall(client, conv, budget, conv.settings.system_prompt.as_deref(), conv.recall, user);
        let body = request_body(&conv.settings, &serde_json::Value::Array(window.messages.clone()));
        TurnRequest { window, budget, tools_tokens, body }
    }

    /// The prompt as memory_ext counts it: the window plus the tools.
    pub fn local_prompt_tokens(&self) -> i64 {
        self.window.token_count + self.tools_tokens
    }
}

thread_local! {
    static AGENTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static SHARE_CONFIG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static NEWEST_SUMMARY_FN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
const SHARE_CONFIG_COLUMN: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                                    WHERE attrelid = to_regclass('memory.agents') AND attname = 'share_config')";

/// Whether this database has what `probe` asks about (the library may be newer than the installed
/// SQL until `ALTER EXTENSION memory_ext UPDATE`). Only a positive answer is remembered.
fn installed(client: &SpiClient, probe: &str, known: &'static std::thread::LocalKey<std::cell::Cell<bool>>) -> bool {
    if known.get() {
        return true;
    }
    let found = client
        .select(probe, None, &[])
        .and_then(|t| t.first().get_one::<bool>())
        .unwrap_or_else(|e| spi_failed(e))
        .unwrap_or(false);
    known.set(found);
    found
}

/// Reads a conversation (RLS applies to the caller) and its agent; None when it cannot be seen.
pub fn load_conversation(client: &SpiClient, id: Uuid) -> Option<Conversation> {
    let agent_columns = if installed(client, "SELECT to_regclass('memory.agents') IS NOT NULL", &AGENTS) {
        // which agent applies: SQL's rule (memory._agent_applies); 0.2.0's SQL, until ALTER
        // EXTENSION UPDATE, has neither it (its join is the same rule) nor share_config
        let (shared, applies) = if installed(client, SHARE_CONFIG_COLUMN, &SHARE_CONFIG) {
            ("a.share_config, a.recall::float8", "memory._agent_applies(a, c.agent_id, c.user_id)")
        } else {
            ("false, 0::float8", "a.id = c.agent_id AND a.user_id = c.user_id")
        };
        format!(
            "a.id, a.system_prompt, a.model, a.tools::text, a.max_context_tokens, a.reply_max_tokens, \
             a.temperature::text::float8, {shared} FROM memory.conversations c LEFT JOIN memory.agents a ON {applies}"
        )
    } else {
        "NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::int4, NULL::int4, NULL::float8, NULL::bool, \
         NULL::float8 FROM memory.conversations c"
            .to_owned()
    };
    let sql = format!(
        "SELECT c.encoding, c.total_tokens, c.message_count, c.last_seq, c.user_id, {agent_columns} WHERE c.id = $1"
    );
    let plan = kept_plan(client, &sql, &[UUID]).unwrap_or_else(|e| spi_failed(e));
    let t = client.select(plan, Some(1), &[id.into()]).unwrap_or_else(|e| spi_failed(e));
    let r = t.into_iter().next()?;
    let get = |e: Result<Option<String>, pgrx::spi::SpiError>| e.unwrap_or_else(|e| spi_failed(e));
    let tools = get(r.get::<String>(9))
        .map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::Array(vec![])))
        .unwrap_or(serde_json::Value::Array(vec![]));
    let int = |i: usize| r.get::<i32>(i).unwrap_or_else(|e| spi_failed(e)).map(i64::from);
    let agent = r.get::<Uuid>(6).unwrap_or_else(|e| spi_failed(e));
    Some(Conversation {
        id,
        agent,
        encoding: super::tokens::encoding(&get(r.get::<String>(1)).unwrap_or_default()),
        total_tokens: r.get::<i64>(2).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default(),
        total_rows: int(3).unwrap_or_default(),
        last_seq: r.get::<i64>(4).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default(),
        owner: r.get::<Uuid>(5).unwrap_or_else(|e| spi_failed(e)),
        agent_config_shared: r.get::<bool>(13).unwrap_or_else(|e| spi_failed(e)).unwrap_or(false),
        recall: r.get::<f64>(14).unwrap_or_else(|e| spi_failed(e)).unwrap_or(0.0),
        settings: TurnSettings {
            agent_id: agent.map(|a| a.to_string()),
            system_prompt: get(r.get::<String>(7)),
            model: get(r.get::<String>(8)).or_else(|| gucs::string(&gucs::LLM_MODEL)).unwrap_or_default(),
            tools,
            max_context_tokens: int(10).unwrap_or(DEFAULT_MAX_CONTEXT_TOKENS),
            reply_max_tokens: int(11).unwrap_or(DEFAULT_REPLY_MAX_TOKENS),
            temperature: r.get::<f64>(12).unwrap_or_else(|e| spi_failed(e)).unwrap_or(DEFAULT_TEMPERATURE),
        },
    })
}

/// The window of a loaded conversation within `max` tokens.
pub fn window_of(client: &SpiClient, conv: &Conversation, max: i64, system_prompt: Option<&str>) -> Window {
    let id = conv.id;
    // A summary can only matter when the history does not fit beside the system prompt.
    let summary = if system_prompt.is_some() || conv.total_tokens + REPLY_PRIMING > max {
        let probe = "SELECT to_regprocedure('memory._newest_summary(uuid)') IS NOT NULL";
        let sql = if installed(client, probe, &NEWEST_SUMMARY_FN) { NEWEST_SUMMARY } else { NEWEST_SUMMARY_BEFORE_0_2 };
        let plan = kept_plan(client, sql, &[UUID]).unwrap_or_else(|e| spi_failed(e));
        let s = client.select(plan, Some(1), &[id.into()]).unwrap_or_else(|e| spi_failed(e));
        s.into_iter().next().map(|s| Summary {
            content: s.get::<String>(1).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default(),
            tokens: i64::from(s.get::<i32>(2).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default()),
            covers_through_seq: s.get::<i64>(3).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default(),
        })
    } else {
        None
    };
    // First batch: about as many rows as the budget holds at this conversation's average size.
    let avg = if conv.total_rows > 0 { (conv.total_tokens / conv.total_rows).max(1) } else { 1 };
    let batch = (max / avg + 2).clamp(8, 1024);
    let mut src =
        IndexSource { client, conversation_id: id, batch, before_seq: i64::MAX, pending: VecDeque::new(), done: false };
    window::build(
        &mut src,
        Params {
            max_tokens: max,
            system_prompt,
            encoding: conv.encoding,
            total_rows: conv.total_rows,
            total_tokens: conv.total_tokens,
            summary,
            orphans: HashSet::new(),
        },
    )
    .or_raise()
}

pub fn not_found(id: Uuid) -> ! {
    fail(PgSqlErrorCode::ERRCODE_NO_DATA_FOUND, format!("conversation {id} does not exist"))
}

/// build_context as 0.1.0's and 0.2.0's SQL declares it (three arguments, C symbol
/// `build_context_wrapper`): a database keeps working with the new library until ALTER EXTENSION
/// UPDATE. Not in the new SQL.
#[pg_extern(stable, sql = false)]
fn build_context(
    conversation_id: Option<Uuid>,
    max_tokens: default!(Option<i32>, "NULL"),
    system_prompt: default!(Option<&str>, "NULL"),
) -> JsonB {
    build_context_recall(conversation_id, max_tokens, system_prompt, None)
}

/// Most candidates recall ranks for one window.
const RECALL_CANDIDATES: i64 = 20;

/// The context window of a stored conversation: valid OpenAI chat messages, newest last, within
/// `max_tokens` by exact count. Without `system_prompt` the conversation's agent's prompt is
/// used; without `max_tokens` the budget of the agent's turns (its max_context_tokens minus
/// reply_max_tokens and its tools), or 8000 for a conversation without an agent. `recall` (a
/// share of the budget, at most 0.5) reserves that share for older messages relevant to the
/// newest embedded user message (see docs/recall.md); NULL or 0 leaves the window as without it.
/// Read-only: runs on a hot standby; RLS applies (someone else's conversation is reported
/// exactly like one that does not exist).
#[pg_extern(stable, name = "build_context")]
fn build_context_recall(
    conversation_id: Option<Uuid>,
    max_tokens: default!(Option<i32>, "NULL"),
    system_prompt: default!(Option<&str>, "NULL"),
    recall: default!(Option<f64>, "NULL"),
) -> JsonB {
    let id = required(conversation_id, "conversation_id");
    if let Some(m) = max_tokens {
        check_budget(Some(m));
    }
    let share = recall.unwrap_or(0.0);
    if !(0.0..=0.5).contains(&share) {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("recall must be between 0 and 0.5, got {share}"));
    }
    Spi::connect(|client| {
        let conv = load_conversation(client, id).unwrap_or_else(|| not_found(id));
        let max = match max_tokens {
            Some(m) => i64::from(m),
            None if conv.settings.agent_id.is_some() => conv.turn_budget(),
            None => DEFAULT_MAX_CONTEXT_TOKENS,
        };
        let prompt = system_prompt.or(conv.settings.system_prompt.as_deref());
        let (window, recall) = window_with_recall(client, &conv, max, prompt, share, None);
        let mut json = window.to_json();
        if let Some(r) = recall {
            json["recall"] = r;
        }
        JsonB(json)
    })
}

/// The window within `max` tokens, `share` of them reserved for recall (0: none, and the window is
/// exactly the one without recall), with what recall placed: `{reserved_tokens, tokens, seqs,
/// facts}`. `user`: whose facts may be recalled (None: the caller's identity).
fn window_with_recall(
    client: &SpiClient,
    conv: &Conversation,
    max: i64,
    prompt: Option<&str>,
    share: f64,
    user: Option<Uuid>,
) -> (Window, Option<serde_json::Value>) {
    if share <= 0.0 {
        return (window_of(client, conv, max, prompt), None);
    }
    let reserved = (max as f64 * share).floor() as i64;
    let mut window = window_of(client, conv, max - reserved, prompt);
    let recalled = recall_into(client, conv, &mut window, reserved, user);
    window.max_tokens = max;
    let placed = recalled.map_or_else(
        || serde_json::json!({"reserved_tokens": reserved, "tokens": 0, "seqs": [], "facts": []}),
        |r| serde_json::json!({"reserved_tokens": reserved, "tokens": r.tokens, "seqs": r.seqs, "facts": r.facts}),
    );
    (window, Some(placed))
}

/// Places the user's facts and the older messages most similar to the newest embedded user
/// message (ranked by memory._recall_candidates under the caller's RLS: plain user and assistant
/// messages before the window, never a tool call or result) that fit `reserved` tokens.
fn recall_into(
    client: &SpiClient,
    conv: &Conversation,
    window: &mut Window,
    reserved: i64,
    user: Option<Uuid>,
) -> Option<recall::Recalled> {
    let before = window.included_seqs.first().copied().unwrap_or(conv.last_seq + 1);
    let rows = client
        .select(
            "SELECT fact_id::text, seq, role, content
               FROM memory._recall_candidates($1, $2, $3, coalesce($4, memory.current_user_id()), $5)",
            None,
            &[conv.id.into(), before.into(), RECALL_CANDIDATES.into(), user.into(), conv.agent.into()],
        )
        .unwrap_or_else(|e| spi_failed(e));
    let (mut facts, mut candidates) = (Vec::new(), Vec::new());
    for r in rows {
        let content = r.get::<String>(4).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default();
        match r.get::<String>(1).unwrap_or_else(|e| spi_failed(e)) {
            Some(id) => facts.push(Fact { id, content }),
            None => candidates.push(Candidate {
                seq: r.get::<i64>(2).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default(),
                role: r.get::<String>(3).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default(),
                content,
            }),
        }
    }
    let recalled = recall::fit(&facts, &candidates, reserved, conv.encoding, &mut interrupt)?;
    let leading = window.messages.iter().take_while(|m| m["role"] == "system").count();
    recall::place(window, &recalled, leading);
    Some(recalled)
}

/// The same window over a given OpenAI-style messages array, for messages kept elsewhere.
#[pg_extern(immutable, parallel_safe)]
fn build_context_from(
    messages: Option<JsonB>,
    max_tokens: default!(Option<i32>, 8000),
    system_prompt: default!(Option<&str>, "NULL"),
    encoding: default!(Option<&str>, "'cl100k_base'"),
) -> JsonB {
    let messages = required(messages, "messages");
    let max = check_budget(max_tokens);
    let enc = super::tokens::encoding(required(encoding, "encoding"));
    let parsed = parse_messages_json(&messages.0).or_raise();
    let (mut src, total_tokens, orphans) = SliceSource::new(parsed, enc, &mut interrupt);
    let total_rows = src.len() as i64;
    let w = window::build(
        &mut src,
        Params { max_tokens: max, system_prompt, encoding: enc, total_rows, total_tokens, summary: None, orphans },
    )
    .or_raise();
    JsonB(w.to_json())
}
