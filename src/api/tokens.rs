//! SQL token functions.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::core::chat::{count_messages, parse_messages_json, RawMessage};
use crate::core::tokenizer::Encoding;
use crate::core::window::Summary;
use crate::gucs;
use crate::sql_error::{interrupt, required, OrRaise};

pub fn encoding(name: &str) -> Encoding {
    Encoding::resolve(name).or_raise()
}

/// Exact token count of ordinary text (special-token strings are counted as text).
#[pg_extern(immutable, strict, parallel_safe)]
fn estimate_tokens(content: &str, encoding: default!(&str, "'cl100k_base'")) -> i32 {
    self::encoding(encoding).count_with(content, &mut interrupt) as i32
}

#[pg_extern(immutable, strict, parallel_safe)]
fn tokenize(content: &str, encoding: default!(&str, "'cl100k_base'")) -> Vec<i32> {
    let ids = self::encoding(encoding).encode_with(content, &mut interrupt).or_raise();
    ids.into_iter().map(|t| t as i32).collect()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn detokenize(tokens: Vec<Option<i32>>, encoding: default!(&str, "'cl100k_base'")) -> String {
    let ids: Vec<i64> = tokens.into_iter().map(|t| i64::from(required(t, "a token id"))).collect();
    self::encoding(encoding).decode(&ids).or_raise()
}

/// The canonical encoding for an encoding or model name: `resolve_encoding('gpt-4o')` is
/// `o200k_base`.
#[pg_extern(immutable, strict, parallel_safe)]
fn resolve_encoding(name: &str) -> &'static str {
    encoding(name).name()
}

/// The encoding new conversations get: the `memory.default_encoding` setting, resolved.
#[pg_extern(stable, parallel_safe)]
fn default_encoding() -> &'static str {
    encoding(&gucs::string(&gucs::DEFAULT_ENCODING).unwrap_or_else(|| "cl100k_base".into())).name()
}

/// Framed tokens of one stored message: what build_context emits for it (a combined tool record
/// counts as its assistant message plus its tool messages). Validates the message: the insert
/// trigger relies on that.
#[pg_extern(immutable, parallel_safe)]
fn message_tokens(
    role: Option<&str>,
    content: Option<&str>,
    tool_calls: default!(Option<JsonB>, "NULL"),
    name: default!(Option<&str>, "NULL"),
    encoding: default!(Option<&str>, "'cl100k_base'"),
    tool_call_id: default!(Option<&str>, "NULL"),
) -> i32 {
    count_message(role, content, tool_calls.as_ref().map(|j| &j.0), name, required(encoding, "encoding"), tool_call_id)
}

/// `message_tokens` for Rust callers (the insert trigger): validates and counts, raising as the
/// SQL function does.
pub(crate) fn count_message(
    role: Option<&str>,
    content: Option<&str>,
    tool_calls: Option<&serde_json::Value>,
    name: Option<&str>,
    encoding: &str,
    tool_call_id: Option<&str>,
) -> i32 {
    let enc = self::encoding(encoding);
    let raw = RawMessage {
        role: required(role, "role"),
        content: content.unwrap_or_else(|| {
            required(None::<&str>, "content (use '' for an assistant message that only calls tools)")
        }),
        name,
        tool_calls,
        tool_call_id,
    };
    raw.expand().or_raise().tokens(enc, &mut interrupt) as i32
}

/// Framed tokens of a summary as build_context emits it: a system message that names it the
/// summary of the earlier conversation. The one definition behind summaries' stored
/// `token_count`, so a window's count never differs from what the trigger stored.
#[pg_extern(immutable, strict, parallel_safe)]
fn summary_tokens(content: &str, encoding: default!(&str, "'cl100k_base'")) -> i32 {
    Summary::message(content).tokens(self::encoding(encoding), &mut interrupt) as i32
}

/// Tokens of an OpenAI-style messages array, plus 3 for reply priming: equal to the OpenAI
/// cookbook's `num_tokens_from_messages` for plain messages.
#[pg_extern(immutable, strict, parallel_safe)]
fn count_message_tokens(messages: JsonB, encoding: default!(&str, "'cl100k_base'")) -> i32 {
    let enc = self::encoding(encoding);
    let parsed = parse_messages_json(&messages.0).or_raise();
    count_messages(&parsed, enc, &mut interrupt) as i32
}
