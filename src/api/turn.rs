//! The Rust half of `memory.chat` and `memory.continue_chat` (SQL wrappers in sql/turns.sql):
//! a whole agent turn in the caller's transaction — build the agent's window, call the LLM, store
//! its answer, record the call. Any failure raises and the transaction writes nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{register_xact_callback, PgXactCallbackEvent};
use pgrx::{JsonB, PgBuiltInOids, PgOid, PgSqlErrorCode, Uuid};
use serde_json::{json, Value};

use super::charges;
use super::context::{load_conversation, not_found, TurnRequest};
use super::llm_thread::{call_waiting, config};
use super::stored::kept_plan_or_raise;
use super::traces;
use crate::core::ledger::Charge;
use crate::core::llm::{Failure, LlmError};
use crate::core::otlp::{Attr, SpanIds};
use crate::core::turn::{column_count, parse_reply, Usage};
use crate::sql_error::spi_failed;
use crate::sql_error::{custom, fail, required};

// Backend-local flags. WRITING is raised by this module only, around the writes of a turn's
// answer: the library's own state, which no setting or SQL can raise. SUPPRESS_AUTO_REPLY is
// raised by memory.chat before it appends the user's message (it answers that message itself);
// anyone may raise it for their own session, which only stops their own auto-replies. Both end
// with the turn or, at the latest, with the transaction.
static WRITING: AtomicBool = AtomicBool::new(false);
static SUPPRESS_AUTO_REPLY: AtomicBool = AtomicBool::new(false);

pub fn in_chat_turn() -> bool {
    WRITING.load(Ordering::Relaxed)
}

struct Raised(&'static AtomicBool);

impl Raised {
    fn new(flag: &'static AtomicBool) -> Raised {
        flag.store(true, Ordering::Relaxed);
        Raised(flag)
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Whether memory.chat of this backend is writing its answer: its own SQL helper refuses to work
/// otherwise, and the answer does not count against the messages-per-minute limit. A
/// backend-local flag of the library: no setting or SQL can raise it.
#[pg_extern(stable, parallel_safe)]
fn _in_chat_turn() -> bool {
    in_chat_turn()
}

/// memory.chat's first step: its user message queues no auto-reply (the turn answers it).
#[pg_extern(volatile, parallel_unsafe)]
fn _suppress_auto_reply() {
    if !SUPPRESS_AUTO_REPLY.swap(true, Ordering::Relaxed) {
        for event in [PgXactCallbackEvent::Commit, PgXactCallbackEvent::Abort] {
            register_xact_callback(event, || SUPPRESS_AUTO_REPLY.store(false, Ordering::Relaxed));
        }
    }
}

#[pg_extern(stable, parallel_safe)]
fn _auto_reply_suppressed() -> bool {
    SUPPRESS_AUTO_REPLY.load(Ordering::Relaxed)
}

/// The error a turn reports (raised by the SQL wrapper: PT… SQLSTATEs have no name in pgrx).
fn error(sqlstate: &str, message: String, hint: &str) -> Value {
    json!({"sqlstate": sqlstate, "message": message, "hint": hint})
}

fn llm_error(e: LlmError) -> Value {
    provider_error("memory.chat", e)
}

/// A failed provider call of `what` as {sqlstate, message, hint}: the rate limit, the timeout, a
/// refusal, or any other failure, each with its PT SQLSTATE.
pub fn provider_error(what: &str, e: LlmError) -> Value {
    let message = format!("{what}: {}", e.message);
    match e.failure {
        Failure::Http(429) => {
            let wait = e.retry_after.map(|d| format!("Retry in {} seconds. ", d.as_secs())).unwrap_or_default();
            error(
                custom::RATE_LIMITED,
                message,
                &format!("The LLM provider is rate limiting. {wait}Nothing was written: retry the call."),
            )
        }
        Failure::Timeout => error(
            custom::GATEWAY_TIMEOUT,
            message,
            "The LLM did not answer within memory.llm_timeout. Nothing was written: retry the call.",
        ),
        Failure::Refused => error(custom::UNPROCESSABLE, message, "Nothing was written."),
        _ => error(custom::BAD_GATEWAY, message, "Nothing was written: retry the call."),
    }
}

/// The answer of a turn over the conversation as it stands: the agent's window, the LLM call
/// (on a thread; cancel and statement_timeout stop the wait at once), the assistant message
/// stored exactly as returned, the call recorded. Returns `{"error": {sqlstate, message, hint}}`
/// instead of the result when the LLM or a limit refuses: memory.chat raises it.
#[pg_extern(volatile, parallel_unsafe)]
fn _chat_answer(conversation_id: Option<Uuid>) -> JsonB {
    let id = required(conversation_id, "conversation_id");
    // SAFETY: reading backend globals.
    let (recovery, read_only) = unsafe { (pg_sys::RecoveryInProgress(), pg_sys::XactReadOnly) };
    if recovery || read_only {
        fail(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            "memory.chat writes the turn's messages: it cannot run in a read-only transaction or on a standby",
        );
    }
    let result = Spi::connect_mut(|client| answer(client, id));
    SUPPRESS_AUTO_REPLY.store(false, Ordering::Relaxed);
    JsonB(result.unwrap_or_else(|e| json!({ "error": e })))
}

// A turn's own statements, planned once per backend (see `kept_plan`): planning them anew each
// turn cost more than running them.
const QUOTA_ERROR: &str = "SELECT memory._caller_token_quota_error()";
const STORE_ANSWER: &str =
    "SELECT to_jsonb(m) - 'conversation_id' - 'search_vector' FROM memory.add_message($1, 'assistant', $2, $3) m";
const RECORD_CALL: &str = "SELECT memory._record_chat_call($1, $2, $3, $4, $5, $6, $7, $8)";

const UUID: PgOid = PgOid::BuiltIn(PgBuiltInOids::UUIDOID);
const TEXT: PgOid = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);
const JSONB: PgOid = PgOid::BuiltIn(PgBuiltInOids::JSONBOID);
const INT4: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT4OID);
const FLOAT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::FLOAT8OID);

fn answer(client: &mut SpiClient, id: Uuid) -> Result<Value, Value> {
    let plan = |sql: &str, types: &[PgOid]| kept_plan_or_raise(client, sql, types);
    let (quota_error, store_answer, record_call) = (
        plan(QUOTA_ERROR, &[]),
        plan(STORE_ANSWER, &[UUID, TEXT, JSONB]),
        plan(RECORD_CALL, &[UUID, UUID, TEXT, INT4, INT4, INT4, INT4, FLOAT8]),
    );
    let quota = client
        .update(quota_error, None, &[])
        .and_then(|t| t.first().get_one::<JsonB>())
        .unwrap_or_else(|e| spi_failed(e));
    if let Some(JsonB(e)) = quota {
        return Err(e);
    }
    let conv = load_conversation(client, id).unwrap_or_else(|| not_found(id));
    if conv.total_rows == 0 {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("conversation {id} has no messages to answer: use memory.chat with the user's message"),
        );
    }
    let request = TurnRequest::new(client, &conv, None);
    let local_prompt = column_count(request.local_prompt_tokens());
    let TurnRequest { window, budget, tools_tokens, body } = request;
    // Charged even if the caller's transaction rolls back (see api/charges.rs): counted at the
    // prompt's own size until the provider reports, and kept if the wait is cancelled (the
    // request was sent).
    let charge = charges::remember(Charge::provisional(
        *crate::api::identity::current_user_id().or(conv.owner).unwrap_or(id).as_bytes(),
        *id.as_bytes(),
        conv.agent.map(|a| *a.as_bytes()),
        &conv.settings.model,
        local_prompt,
    ));
    let trace = traces::call_trace(SpanIds::root, || {
        let mut attributes = vec![
            ("memory.call.kind", Attr::Str("chat".into())),
            ("memory.conversation.id", Attr::Str(id.to_string())),
            ("memory.window.tokens", Attr::Int(i64::from(local_prompt))),
            ("memory.summary.used", Attr::Bool(window.summary_included)),
        ];
        if let Some(agent) = conv.agent {
            attributes.push(("memory.agent.id", Attr::Str(agent.to_string())));
        }
        attributes
    });
    let answered = call_waiting(config(), body, trace, crate::sql_error::interrupt);
    match &answered {
        Ok(a) => charges::amend(charge, |c| {
            [c.prompt_tokens, c.completion_tokens, c.total_tokens] = Usage::from_answer(&a.json).columns();
            c.latency_ms = a.latency.as_secs_f64() * 1000.0;
            c.failed = false;
        }),
        // the provider may have processed it
        Err(e) if matches!(e.failure, Failure::Timeout | Failure::Malformed) => {}
        Err(_) => charges::forget(charge),
    }
    let answer = answered.map_err(llm_error)?;
    let reply = parse_reply(&answer.json, &answer.text).map_err(llm_error)?;

    let _writing = Raised::new(&WRITING);
    let stored = client
        .update(
            store_answer,
            None,
            &[id.into(), reply.content.clone().into(), reply.tool_calls.clone().map(JsonB).into()],
        )
        .and_then(|t| t.first().get_one::<JsonB>())
        .unwrap_or_else(|e| spi_failed(e))
        .map(|j| j.0)
        .unwrap_or(Value::Null);
    let [prompt_tokens, completion_tokens, total_tokens] = reply.usage.columns();
    client
        .update(
            record_call,
            None,
            &[
                id.into(),
                conv.agent.into(),
                conv.settings.model.clone().into(),
                prompt_tokens.into(),
                completion_tokens.into(),
                total_tokens.into(),
                local_prompt.into(),
                (answer.latency.as_secs_f64() * 1000.0).into(),
            ],
        )
        .unwrap_or_else(|e| spi_failed(e));
    Ok(json!({
        "message": stored,
        "usage": reply.usage.to_json(),
        "finish_reason": reply.finish_reason,
        "model": conv.settings.model,
        "agent_id": conv.settings.agent_id,
        "context": {
            "token_count": window.token_count,
            "tools_tokens": tools_tokens,
            "max_tokens": budget,
            "included_messages": window.included_messages,
            "omitted_messages": window.omitted_messages,
            "summary_included": window.summary_included,
            "unsummarized_omitted": window.unsummarized_omitted,
            "overflow": window.overflow,
        },
    }))
}
