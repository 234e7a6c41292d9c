//! Reading stored messages through SPI: one column list and one decoder, shared by
//! build_context and the summary worker.

use pgrx::spi::{SpiError, SpiHeapTupleData};

use crate::core::chat::RawMessage;
use crate::core::error::MemError;
use crate::core::window::Row;

/// The newest summary of conversation $1: the same definition as SQL's `memory._newest_summary`
/// (highest covers_through_seq, then highest id). Written out rather than called so that the
/// library also works against the previous version's SQL until `ALTER EXTENSION ... UPDATE`.
pub const NEWEST_SUMMARY: &str = "SELECT content, token_count, covers_through_seq, covered_tokens \
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
