//! `build_context` and `build_context_from`: the window algorithm of
//! `core::window` over rows read newest-first through the (conversation_id, seq) index.

use std::collections::{HashSet, VecDeque};

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{JsonB, PgSqlErrorCode, Uuid};

use super::stored::{message_row, MESSAGE_COLUMNS, NEWEST_SUMMARY};
use crate::core::chat::{parse_messages_json, REPLY_PRIMING};
use crate::core::window::{self, Params, Row, RowSource, SliceSource, Summary};
use crate::sql_error::{fail, interrupt, required, OrRaise};

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
            .select(&rows_sql(), None, &[self.conversation_id.into(), self.before_seq.into(), self.batch.into()])
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

fn spi_failed(e: pgrx::spi::SpiError) -> ! {
    fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("memory_ext: SPI failed: {e}"))
}

fn check_budget(max_tokens: Option<i32>) -> i64 {
    let max = required(max_tokens, "max_tokens");
    if max <= 0 {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("max_tokens must be positive, got {max}"));
    }
    i64::from(max)
}

/// The context window of a stored conversation: valid OpenAI chat messages, newest last, within
/// `max_tokens` by exact count. Read-only: runs on a hot standby; RLS applies (someone else's
/// conversation is reported exactly like one that does not exist).
#[pg_extern(stable)]
fn build_context(
    conversation_id: Option<Uuid>,
    max_tokens: default!(Option<i32>, 8000),
    system_prompt: default!(Option<&str>, "NULL"),
) -> JsonB {
    let id = required(conversation_id, "conversation_id");
    let max = check_budget(max_tokens);
    Spi::connect(|client| {
        let conv = client
            .select(
                "SELECT encoding, total_tokens, message_count FROM memory.conversations WHERE id = $1",
                Some(1),
                &[id.into()],
            )
            .unwrap_or_else(|e| spi_failed(e));
        if conv.is_empty() {
            fail(PgSqlErrorCode::ERRCODE_NO_DATA_FOUND, format!("conversation {id} does not exist"));
        }
        let conv = conv.first();
        let encoding: String = conv.get(1).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default();
        let total_tokens: i64 = conv.get(2).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default();
        let total_rows: i32 = conv.get(3).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default();
        let enc = super::tokens::encoding(&encoding);

        // A summary can only matter when the history does not fit beside the system prompt.
        let summary = if system_prompt.is_some() || total_tokens + REPLY_PRIMING > max {
            let s = client.select(NEWEST_SUMMARY, Some(1), &[id.into()]).unwrap_or_else(|e| spi_failed(e));
            s.into_iter().next().map(|s| Summary {
                content: s.get::<String>(1).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default(),
                tokens: i64::from(s.get::<i32>(2).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default()),
                covers_through_seq: s.get::<i64>(3).unwrap_or_else(|e| spi_failed(e)).unwrap_or_default(),
            })
        } else {
            None
        };

        // First batch: about as many rows as the budget holds at this conversation's average size.
        let avg = if total_rows > 0 { (total_tokens / i64::from(total_rows)).max(1) } else { 1 };
        let batch = (max / avg + 2).clamp(8, 1024);
        let mut src = IndexSource {
            client,
            conversation_id: id,
            batch,
            before_seq: i64::MAX,
            pending: VecDeque::new(),
            done: false,
        };
        let w = window::build(
            &mut src,
            Params {
                max_tokens: max,
                system_prompt,
                encoding: enc,
                total_rows: i64::from(total_rows),
                total_tokens,
                summary,
                orphans: HashSet::new(),
            },
        )
        .or_raise();
        JsonB(w.to_json())
    })
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
