//! Reading stored messages through SPI: one column list and one decoder, shared by
//! build_context and the summary worker.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiError, SpiHeapTupleData};
use pgrx::PgOid;

use crate::core::chat::RawMessage;
use crate::core::error::MemError;
use crate::core::window::Row;

/// The newest summary of conversation $1, by SQL's one definition (`memory._newest_summary`); no
/// row when it has none.
pub const NEWEST_SUMMARY: &str = "SELECT s.content, s.token_count, s.covers_through_seq, s.covered_tokens \
     FROM memory._newest_summary($1) s WHERE s.id IS NOT NULL";

/// The same for 0.1.0's SQL, which has no `memory._newest_summary` until `ALTER EXTENSION ...
/// UPDATE` (build_context serves it meanwhile): that definition, written out.
pub const NEWEST_SUMMARY_BEFORE_0_2: &str = "SELECT content, token_count, covers_through_seq, covered_tokens \
     FROM memory.conversation_summaries WHERE conversation_id = $1 \
     ORDER BY covers_through_seq DESC, id DESC LIMIT 1";

/// The columns `message_row` decodes, in its order.
pub const MESSAGE_COLUMNS: &str = "seq, token_count, role, content, name, tool_calls::text, tool_call_id";

/// One row selected with `MESSAGE_COLUMNS`, expanded into chat messages. Expanding only parses:
/// the stored `token_count` is used, nothing is counted again. The outer error is SPI's, the
/// inner one a stored message that no longer validates.
pub fn message_row(r: &SpiHeapTupleData) -> Result<Result<Row, MemError>, SpiError> {
    let text = |i: usize| r.get::<String>(i);
    let seq: i64 = r.get(1)?.unwrap_or_default();
    let tokens: i32 = r.get(2)?.unwrap_or_default();
    let (role, content, name, calls, call_id) =
        (text(3)?.unwrap_or_default(), text(4)?.unwrap_or_default(), text(5)?, text(6)?, text(7)?);
    let calls: Option<serde_json::Value> = match calls.map(|t| serde_json::from_str(&t)).transpose() {
        Ok(v) => v,
        Err(e) => return Ok(Err(MemError::invalid(format!("stored tool_calls of seq {seq} are not JSON: {e}")))),
    };
    let raw = RawMessage {
        role: &role,
        content: &content,
        name: name.as_deref(),
        tool_calls: calls.as_ref(),
        tool_call_id: call_id.as_deref(),
    };
    Ok(raw.expand().map(|msg| Row { seq, tokens: i64::from(tokens), msg }))
}

/// The plan of a fixed statement, prepared once per backend and kept: planning the RLS-guarded
/// queries of a window, or a chat turn's calls, costs more than running them. PostgreSQL revalidates a kept plan when what
/// it depends on changes (DDL, the role that runs it), so it never goes stale. The statements are
/// few and fixed (leaked on purpose: they live as long as the backend).
pub fn kept_plan(client: &SpiClient, sql: &str, types: &[PgOid]) -> Result<&'static OwnedPreparedStatement, SpiError> {
    thread_local!(static PLANS: RefCell<HashMap<String, &'static OwnedPreparedStatement>> = RefCell::new(HashMap::new()));
    if let Some(plan) = PLANS.with_borrow(|p| p.get(sql).copied()) {
        return Ok(plan);
    }
    let plan: &'static OwnedPreparedStatement = Box::leak(Box::new(client.prepare(sql, types)?.keep()));
    PLANS.with_borrow_mut(|p| p.insert(sql.to_owned(), plan));
    Ok(plan)
}

/// `kept_plan`, raising when the statement cannot be planned (an SPI error is a bug here).
pub fn kept_plan_or_raise(client: &SpiClient, sql: &str, types: &[PgOid]) -> &'static OwnedPreparedStatement {
    kept_plan(client, sql, types).unwrap_or_else(|e| crate::sql_error::spi_failed(e))
}
