//! Limits that keep one user's input from costing everyone: message size, tool calls per message,
//! the summarize threshold's floor, and the per-user rate, token and cost limits' settings.
//! Pure Rust over settings: these functions run no SQL, so no search_path can change what they do.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::gucs;
use crate::sql_error::fail_with_hint;

/// Raises 54000 (program_limit_exceeded) when a message or summary is larger than
/// `memory.max_message_size` or carries more than `memory.max_tool_calls` calls. Called by the
/// insert triggers before anything is parsed or counted.
#[pg_extern(stable, parallel_safe)]
fn _check_message_limits(bytes: Option<i64>, tool_calls: Option<i32>) {
    check_message_size(bytes.unwrap_or(0));
    check_tool_call_count(tool_calls.unwrap_or(0));
}

/// The size half of `_check_message_limits`, for the insert trigger: checked before the message
/// is parsed.
pub(crate) fn check_message_size(bytes: i64) {
    let max = gucs::max_message_bytes();
    if bytes > max {
        fail_with_hint(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("message too large: {bytes} bytes, the limit is {max} bytes"),
            "Store large documents elsewhere and reference them; the operator can raise memory.max_message_size.",
        );
    }
}

/// The tool-call half of `_check_message_limits`.
pub(crate) fn check_tool_call_count(calls: i32) {
    let max_calls = gucs::MAX_TOOL_CALLS.get();
    if calls > max_calls {
        fail_with_hint(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("too many tool calls in one message: {calls}, the limit is {max_calls}"),
            "Split the calls over several assistant turns; the operator can raise memory.max_tool_calls.",
        );
    }
}

/// The summarize threshold in force: the agent's own when it has one, else
/// `memory.summarize_threshold`, never below the operator's `memory.min_summarize_threshold`.
#[pg_extern(stable, parallel_safe)]
fn _summarize_threshold(agent_threshold: default!(Option<i32>, "NULL")) -> i64 {
    gucs::agent_summarize_threshold(agent_threshold)
}

#[pg_extern(stable, parallel_safe)]
fn _max_messages_per_minute() -> i32 {
    gucs::MAX_MESSAGES_PER_MINUTE.get()
}

#[pg_extern(stable, parallel_safe)]
fn _max_llm_tokens_per_day() -> i64 {
    i64::from(gucs::MAX_LLM_TOKENS_PER_DAY.get())
}

/// `memory.max_llm_cost_per_day` in US dollars (0: no limit).
#[pg_extern(stable, parallel_safe)]
fn _max_llm_cost_per_day() -> f64 {
    gucs::MAX_LLM_COST_PER_DAY.get()
}

/// Whether an inserted message counts against `memory.max_messages_per_minute`: a limit is set,
/// and the message is not written by memory_ext itself (its SECURITY DEFINER code and the
/// worker run as a superuser) nor is memory.chat's stored answer.
#[pg_extern(stable, parallel_safe)]
fn _message_limit_applies() -> bool {
    gucs::MAX_MESSAGES_PER_MINUTE.get() > 0
        && !super::roles::_current_role_is_superuser()
        && !crate::api::turn::in_chat_turn()
}
