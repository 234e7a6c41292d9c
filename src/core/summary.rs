//! Progressive summaries: where to cut, what to ask the LLM, how to read its answer, and the
//! offline extractive summarizer. No pgrx, no I/O.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::chat::{ChatMessage, Role};
pub use super::llm::LlmError;
use super::llm::{read_answer, Failure};
use super::tokenizer::Encoding;
use super::window::Row;

pub const EXTRACTIVE_MODEL: &str = "memory_ext/extractive";

const INSTRUCTIONS: &str = "You maintain the running summary of a conversation between a user and an AI \
assistant. Write a concise summary in the third person that keeps every fact, decision, name, number, \
open question and tool result the assistant may need later. Merge the previous summary with the new \
messages into one text. Answer with the summary only.";

/// The seq through which a new summary should cover: everything before the newest messages worth
/// at least `keep_tokens` (always at least the newest message or tool group), cut only where no
/// tool call is separated from its results. `rows` are the messages after the previous summary,
/// oldest first: all of them, or a first batch of them, in which case `tail_tokens` are the stored
/// tokens after the batch and `answered_later` the ids of the batch's calls whose results come
/// after it. None when nothing can be summarized yet.
pub fn choose_cut(rows: &[Row], keep_tokens: i64, tail_tokens: i64, answered_later: &HashSet<String>) -> Option<i64> {
    let mut kept = tail_tokens;
    let mut open: HashSet<&str> = answered_later.iter().map(String::as_str).collect();
    // Messages after the batch stay verbatim anyway: the whole batch may go when they suffice.
    let more_after_batch = tail_tokens > 0;
    if more_after_batch && open.is_empty() && kept >= keep_tokens {
        return rows.last().map(|r| r.seq);
    }
    for i in (1..rows.len()).rev() {
        let r = &rows[i];
        kept += r.tokens;
        if let Some(a) = &r.msg.answers {
            open.insert(a);
        }
        for c in &r.msg.calls {
            open.remove(c.as_str());
        }
        // rows[i..] (and whatever follows the batch) stay verbatim; rows[..i] are summarized
        if open.is_empty() && kept >= keep_tokens {
            return Some(rows[i - 1].seq);
        }
    }
    None
}

/// Characters of one message's text the summarizer is shown; the rest is marked as cut. Keeps
/// every prompt bounded whatever one message holds.
pub const PROMPT_CHARS_PER_MESSAGE: usize = 8_000;

/// `text` cut at `limit` characters, the cut marked, for a prompt that must stay bounded.
pub fn clipped(text: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(limit) {
        None => text.into(),
        Some((end, _)) => format!("{} […{} more bytes cut]", &text[..end], text.len() - end).into(),
    }
}

/// One line per message, as the summarizer sees the transcript.
fn transcript(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        for m in &r.msg.messages {
            let who = match (&m.name, m.role) {
                (Some(n), role) => format!("{} ({n})", role.as_str()),
                (None, Role::Tool) => "tool result".to_owned(),
                (None, role) => role.as_str().to_owned(),
            };
            if !m.content.is_empty() {
                out.push_str(&format!("[{who}] {}\n", clipped(&m.content, PROMPT_CHARS_PER_MESSAGE)));
            }
            for call in m.tool_calls.iter().flatten() {
                let f = &call["function"];
                out.push_str(&format!(
                    "[{who} calls {}] {}\n",
                    f["name"].as_str().unwrap_or("?"),
                    clipped(f["arguments"].as_str().unwrap_or(""), PROMPT_CHARS_PER_MESSAGE)
                ));
            }
        }
    }
    out
}

/// The chat request: previous summary plus only the new messages.
pub fn request_body(model: &str, previous: Option<&str>, rows: &[Row], max_tokens: i32) -> Value {
    let mut user = String::new();
    if let Some(p) = previous {
        user.push_str("Previous summary:\n");
        user.push_str(p);
        user.push_str("\n\n");
    }
    user.push_str("New messages:\n");
    user.push_str(&transcript(rows));
    json!({
        "model": model,
        "messages": [
            ChatMessage::new(Role::System, INSTRUCTIONS).to_json(),
            ChatMessage::new(Role::User, user).to_json(),
        ],
        "max_tokens": max_tokens,
        "temperature": 0.2,
    })
}

/// The summary in an answer: choices[0].message.content, trimmed.
pub fn summary_content(answer: &Value, body: &str) -> Result<String, LlmError> {
    let content = answer
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    if content.is_empty() {
        let snippet: String = body.chars().take(200).collect();
        return Err(LlmError::of(
            Failure::Malformed,
            format!("the LLM answer has no choices[0].message.content: {snippet}"),
        ));
    }
    Ok(content.to_owned())
}

/// Reads an OpenAI-compatible `/chat/completions` answer as a summary.
pub fn parse_response(status: u16, retry_after: Option<&str>, body: &str) -> Result<String, LlmError> {
    summary_content(&read_answer(status, retry_after, body)?, body)
}

/// The offline summarizer: the previous summary, then the first sentence of each new message;
/// when that is over `max_tokens`, lines are dropped from the middle, so the oldest facts and the
/// newest turns both survive. Linear in the input: each line is counted once, and the result is
/// checked with one more count (rarely a few, when joining lines changes the tokenization).
pub fn extractive(previous: Option<&str>, rows: &[Row], enc: Encoding, max_tokens: i32) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in transcript(rows).lines() {
        let (who, text) = line.split_once("] ").unwrap_or(("", line));
        let first: String =
            text.split_inclusive(['.', '!', '?', '\n']).next().unwrap_or(text).chars().take(160).collect();
        lines.push(format!("- {}: {}", who.trim_start_matches('['), first.trim()));
    }
    let mut head = previous.map(|p| format!("Earlier: {p}\n")).unwrap_or_default();
    head.push_str("Key points, oldest first (extractive summary):");
    let render = |front: &[String], back: &[String], gap: bool| -> String {
        let mut s = head.clone();
        for l in front {
            s.push('\n');
            s.push_str(l);
        }
        if gap {
            s.push_str("\n- …");
        }
        for l in back {
            s.push('\n');
            s.push_str(l);
        }
        s
    };
    let max = i64::from(max_tokens);
    let all = render(&lines, &[], false);
    if lines.len() <= 1 || enc.count(&all) as i64 <= max {
        return all;
    }
    // Take lines alternately from the oldest and the newest end while the estimate fits.
    let cost: Vec<i64> = lines.iter().map(|l| enc.count(l) as i64 + 1).collect();
    let mut budget = max - enc.count(&head) as i64 - 3;
    let (mut lo, mut hi) = (0usize, lines.len());
    let mut take_front = true;
    while lo < hi {
        let i = if take_front { lo } else { hi - 1 };
        if cost[i] > budget {
            break;
        }
        budget -= cost[i];
        if take_front {
            lo += 1;
        } else {
            hi -= 1;
        }
        take_front = !take_front;
    }
    let (mut front, mut back) = (lo.max(1), hi.min(lines.len() - 1).max(lo.max(1)));
    loop {
        let text = render(&lines[..front], &lines[back..], true);
        if enc.count(&text) as i64 <= max || (front <= 1 && back >= lines.len()) {
            return text;
        }
        // the estimate was a little short: drop one more line from the middle
        if lines.len() - back > front - 1 {
            back += 1;
        } else {
            front -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chat::parse_messages_json;
    use std::time::Duration;

    fn rows(msgs: Value) -> Vec<Row> {
        parse_messages_json(&msgs)
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, msg)| Row { seq: i as i64 + 11, tokens: msg.tokens(Encoding::Cl100kBase, &mut || {}), msg })
            .collect()
    }

    #[test]
    fn cut_keeps_newest_turns_and_tool_groups_whole() {
        let r = rows(json!([
            {"role": "user", "content": "one two three four five"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "meanwhile"},
            {"role": "tool", "tool_call_id": "a", "content": "result"},
            {"role": "assistant", "content": "done"},
        ]));
        // keep just the newest message
        let none = HashSet::new();
        assert_eq!(choose_cut(&r, 1, 0, &none), Some(14));
        // keeping two messages would split the call (seq 12) from its result (seq 14)
        let two = r[4].tokens + r[3].tokens;
        assert_eq!(choose_cut(&r, two, 0, &none), Some(11));
        // nothing before the newest group can be summarized
        assert_eq!(choose_cut(&r, 10_000, 0, &none), None);
        assert_eq!(choose_cut(&r[..1], 0, 0, &none), None);
    }

    #[test]
    fn cut_of_a_first_batch_respects_what_follows_it() {
        let r = rows(json!([
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "two"},
        ]));
        let none = HashSet::new();
        // enough tokens after the batch: the whole batch can be summarized
        assert_eq!(choose_cut(&r, 100, 100, &none), Some(13));
        // the call at seq 12 is answered after the batch: cut before it
        let later: HashSet<String> = ["a".to_owned()].into();
        assert_eq!(choose_cut(&r, 100, 100, &later), Some(11));
        // not enough after the batch: the batch's own newest rows are kept as well
        assert_eq!(choose_cut(&r, r[2].tokens + 1, 1, &none), Some(12));
    }

    #[test]
    fn extractive_summary_of_a_long_backlog_is_bounded_and_keeps_both_ends() {
        let msgs: Vec<Value> =
            (0..12_000).map(|i| json!({"role": "user", "content": format!("Fact {i}. Detail.")})).collect();
        let r = rows(Value::Array(msgs));
        let s = extractive(None, &r, Encoding::Cl100kBase, 500);
        assert!(Encoding::Cl100kBase.count(&s) <= 500);
        assert!(s.contains("Fact 0."), "{s}");
        assert!(s.contains("Fact 11999."), "{s}");
    }

    #[test]
    fn prompts_clip_huge_messages() {
        let r = rows(json!([{"role": "user", "content": "x".repeat(1_000_000)}]));
        let body = request_body("m", None, &r, 300);
        let user = body["messages"][1]["content"].as_str().unwrap();
        assert!(user.len() < PROMPT_CHARS_PER_MESSAGE + 200, "{}", user.len());
        assert!(user.contains("more bytes cut"));
    }

    #[test]
    fn request_carries_previous_summary_and_new_messages_only() {
        let r = rows(json!([{"role": "user", "content": "Book a table for 4"},
                            {"role": "assistant", "content": "", "tool_calls": [{"id": "b", "type": "function", "function": {"name": "book", "arguments": "{\"n\":4}"}}]}]));
        let body = request_body("m", Some("They talked about Rome."), &r, 300);
        assert_eq!(body["model"], "m");
        assert_eq!(body["max_tokens"], 300);
        let user = body["messages"][1]["content"].as_str().unwrap();
        assert!(user.starts_with("Previous summary:\nThey talked about Rome."));
        assert!(user.contains("[user] Book a table for 4"));
        assert!(user.contains("[assistant calls book] {\"n\":4}"));
    }

    #[test]
    fn parses_answers_and_classifies_failures() {
        let ok = r#"{"choices":[{"message":{"role":"assistant","content":"  A summary. "}}]}"#;
        assert_eq!(parse_response(200, None, ok).unwrap(), "A summary.");
        let e = parse_response(429, Some("7"), "slow down").unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        assert!(e.message.starts_with("HTTP 429"));
        assert!(parse_response(500, None, "boom").unwrap_err().message.contains("HTTP 500"));
        assert!(parse_response(200, None, "<html>").unwrap_err().message.contains("invalid JSON"));
        assert!(parse_response(200, None, r#"{"choices":[]}"#).unwrap_err().message.contains("no choices[0]"));
        assert!(parse_response(200, None, r#"{"choices":[{"message":{"content":""}}]}"#).is_err());
    }

    #[test]
    fn extractive_summary_fits_its_budget() {
        let msgs: Vec<Value> = (0..50)
            .map(|i| json!({"role": "user", "content": format!("Point {i} is important. More detail follows here.")}))
            .collect();
        let r = rows(Value::Array(msgs));
        let s = extractive(Some("Before that, greetings."), &r, Encoding::Cl100kBase, 120);
        assert!(Encoding::Cl100kBase.count(&s) <= 120, "{s}");
        assert!(s.starts_with("Earlier: Before that, greetings."));
        assert!(s.contains("Point 0 is important."), "the oldest fact survives: {s}");
        assert!(s.contains("Point 49 is important."), "the newest turn survives: {s}");
        assert!(s.contains("- …"), "the gap is marked: {s}");
        assert!(!s.contains("More detail"));
    }
}
