//! The token window: the newest contiguous run of stored messages that fits the
//! budget next to the system prompt and, when not everything fits, the newest summary. Pure
//! logic over a newest-first row source, shared by `build_context` (rows from the index) and
//! `build_context_from` (rows from a given array).

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::chat::{ChatMessage, Expanded, Role, REPLY_PRIMING};
use super::error::{MemError, Result};
use super::tokenizer::Encoding;

pub const SUMMARY_PREFIX: &str = "Summary of the earlier conversation: ";

/// One stored message: its position, its stored framed token count, and what it expands to.
#[derive(Debug, Clone)]
pub struct Row {
    pub seq: i64,
    pub tokens: i64,
    pub msg: Expanded,
}

/// Rows of one conversation, newest first. Implementations read lazily: the algorithm pulls only
/// the rows of the window plus one look-ahead.
pub trait RowSource {
    fn next_row(&mut self) -> Option<Row>;
    /// How many rows have `lo < seq < hi`.
    fn count_between(&mut self, lo: i64, hi: i64) -> i64;
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub content: String,
    /// Framed tokens of the summary system message as emitted.
    pub tokens: i64,
    pub covers_through_seq: i64,
}

impl Summary {
    pub fn message(content: &str) -> ChatMessage {
        ChatMessage::new(Role::System, format!("{SUMMARY_PREFIX}{content}"))
    }
}

pub struct Params<'a> {
    pub max_tokens: i64,
    pub system_prompt: Option<&'a str>,
    pub encoding: Encoding,
    /// Rows and stored tokens of the whole conversation (kept by triggers; O(1) to read).
    pub total_rows: i64,
    pub total_tokens: i64,
    pub summary: Option<Summary>,
    /// Tool-call ids answered by rows whose call is not in the conversation (known up front
    /// for given arrays; discovered by the scan otherwise).
    pub orphans: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub messages: Vec<Value>,
    pub token_count: i64,
    pub max_tokens: i64,
    pub encoding: &'static str,
    pub included_messages: i64,
    pub omitted_messages: i64,
    pub summary_included: bool,
    pub unsummarized_omitted: i64,
    pub overflow: bool,
    /// Seqs of the stored rows emitted, oldest first (not part of the JSON).
    pub included_seqs: Vec<i64>,
}

impl Window {
    pub fn to_json(&self) -> Value {
        json!({
            "messages": self.messages,
            "token_count": self.token_count,
            "max_tokens": self.max_tokens,
            "encoding": self.encoding,
            "included_messages": self.included_messages,
            "omitted_messages": self.omitted_messages,
            "summary_included": self.summary_included,
            "unsummarized_omitted": self.unsummarized_omitted,
            "overflow": self.overflow,
        })
    }
}

/// Rows pulled so far, so a second pass (without the summary) does not read them again.
struct Buffer<'s> {
    src: &'s mut dyn RowSource,
    rows: Vec<Row>,
    done: bool,
}

impl Buffer<'_> {
    fn get(&mut self, i: usize) -> Option<&Row> {
        while self.rows.len() <= i && !self.done {
            match self.src.next_row() {
                Some(r) => self.rows.push(r),
                None => self.done = true,
            }
        }
        self.rows.get(i)
    }
}

struct Scan {
    /// Index (newest first) of the oldest row of the window.
    cut: Option<usize>,
    overflow: bool,
    /// Calls answered in the scanned rows but never made before the start of history.
    unmatched_at_start: HashSet<String>,
}

/// Walks newest-first, adding rows while the sum stays within `budget`. A row boundary is a
/// valid start only when every tool result after it has its call after it too, so tool groups
/// stay whole. Stops at the first row that does not fit, or at `lower_seq` once the newest group
/// is in.
fn scan(buf: &mut Buffer, budget: i64, lower_seq: Option<i64>, orphans: &HashSet<String>) -> Scan {
    let mut sum = 0i64;
    let mut open: HashSet<String> = HashSet::new();
    let mut cut = None;
    let mut i = 0;
    while let Some(row) = buf.get(i) {
        if cut.is_some() && lower_seq.is_some_and(|l| row.seq <= l) {
            return Scan { cut, overflow: false, unmatched_at_start: HashSet::new() };
        }
        let orphan = row.msg.answers.as_ref().is_some_and(|a| orphans.contains(a));
        if !orphan {
            sum += row.tokens;
            if sum > budget && cut.is_some() {
                return Scan { cut, overflow: false, unmatched_at_start: HashSet::new() };
            }
            if let Some(a) = &row.msg.answers {
                open.insert(a.clone());
            }
            for c in &row.msg.calls {
                open.remove(c);
            }
        }
        if open.is_empty() {
            cut = Some(i);
            if sum > budget {
                // The newest group alone does not fit: it is still sent, flagged.
                return Scan { cut, overflow: true, unmatched_at_start: HashSet::new() };
            }
        }
        i += 1;
    }
    Scan { cut, overflow: false, unmatched_at_start: open }
}

pub fn build(src: &mut dyn RowSource, mut p: Params) -> Result<Window> {
    if p.max_tokens <= 0 {
        return Err(MemError::invalid(format!("max_tokens must be positive, got {}", p.max_tokens)));
    }
    let enc = p.encoding;
    let system = p.system_prompt.map(|s| ChatMessage::new(Role::System, s));
    let base = REPLY_PRIMING + system.as_ref().map_or(0, |m| m.tokens(enc, &mut || {}));
    if base > p.max_tokens {
        return Err(MemError::invalid(match &system {
            Some(_) => format!(
                "the system prompt alone needs {base} tokens (with {REPLY_PRIMING} for reply priming), more than max_tokens {}",
                p.max_tokens
            ),
            None => format!(
                "max_tokens {} is smaller than the {REPLY_PRIMING} tokens every request spends on reply priming",
                p.max_tokens
            ),
        }));
    }
    let budget = p.max_tokens - base;
    let mut buf = Buffer { src, rows: Vec::new(), done: false };

    let everything_fits = p.total_tokens <= budget;
    let mut chosen = None;
    if !everything_fits {
        if let Some(s) = p.summary.as_ref().filter(|s| s.tokens <= budget) {
            let r = scan(&mut buf, budget - s.tokens, Some(s.covers_through_seq), &p.orphans);
            if r.cut.is_some() && !r.overflow {
                chosen = Some((r, true));
            }
        }
    }
    let (scan_result, summary_included) = match chosen {
        Some(c) => c,
        None => {
            let mut r = scan(&mut buf, budget, None, &p.orphans);
            if !r.unmatched_at_start.is_empty() {
                // Tool results whose call is not in the conversation: leave them out and rescan.
                p.orphans.extend(r.unmatched_at_start.drain());
                r = scan(&mut buf, budget, None, &p.orphans);
            }
            (r, false)
        }
    };

    let window_rows: Vec<&Row> = match scan_result.cut {
        Some(c) => buf.rows[..=c].iter().rev().collect(),
        None => Vec::new(),
    };
    let assembled = assemble(&window_rows, &p.orphans, enc);

    let mut messages = Vec::with_capacity(assembled.messages.len() + 2);
    let mut token_count = base + assembled.tokens;
    if let Some(sys) = &system {
        messages.push(sys.to_json());
    }
    let summary = if summary_included { p.summary.as_ref() } else { None };
    if let Some(s) = summary {
        messages.push(Summary::message(&s.content).to_json());
        token_count += s.tokens;
    }
    messages.extend(assembled.messages.iter().map(ChatMessage::to_json));

    let included = assembled.included_seqs.len() as i64;
    let omitted = p.total_rows - included;
    let unsummarized_omitted = match (summary, assembled.included_seqs.first()) {
        (Some(s), Some(&first)) => {
            let included_set: HashSet<i64> = assembled.included_seqs.iter().copied().collect();
            let skipped_in_window = window_rows
                .iter()
                .filter(|r| r.seq > first && r.seq > s.covers_through_seq && !included_set.contains(&r.seq))
                .count() as i64;
            buf.src.count_between(s.covers_through_seq, first) + skipped_in_window
        }
        _ => omitted,
    };
    Ok(Window {
        messages,
        token_count,
        max_tokens: p.max_tokens,
        encoding: enc.name(),
        included_messages: included,
        omitted_messages: omitted,
        summary_included,
        unsummarized_omitted,
        overflow: scan_result.overflow,
        included_seqs: assembled.included_seqs,
    })
}

struct Assembled {
    messages: Vec<ChatMessage>,
    tokens: i64,
    included_seqs: Vec<i64>,
}

/// Turns the window's rows (oldest first) into a valid payload: tool results are placed right
/// after the assistant message that made the call (OpenAI requires it), orphan results are left
/// out, and calls that never got a result are removed from their message (which is left out if
/// nothing else remains). Only such a modified message is re-tokenized.
fn assemble(rows: &[&Row], orphans: &HashSet<String>, enc: Encoding) -> Assembled {
    let is_orphan = |r: &Row| r.msg.answers.as_ref().is_some_and(|a| orphans.contains(a));
    // call id -> indexes of the rows answering it, in order
    let mut answers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if let (Some(a), false) = (&r.msg.answers, is_orphan(r)) {
            answers.entry(a.as_str()).or_default().push(i);
        }
    }
    let mut out = Assembled { messages: Vec::new(), tokens: 0, included_seqs: Vec::new() };
    let mut placed = vec![false; rows.len()];
    for (i, r) in rows.iter().enumerate() {
        if placed[i] || is_orphan(r) {
            continue;
        }
        placed[i] = true;
        if r.msg.calls.is_empty() || r.msg.calls.iter().all(|c| answers.contains_key(c.as_str())) {
            out.messages.extend(r.msg.messages.iter().cloned());
            out.tokens += r.tokens;
        } else {
            let mut m = r.msg.messages[0].clone();
            let kept: Vec<Value> = m
                .tool_calls
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.get("id").and_then(Value::as_str).is_some_and(|id| answers.contains_key(id)))
                .collect();
            m.tool_calls = (!kept.is_empty()).then_some(kept);
            if m.tool_calls.is_none() && m.content.is_empty() {
                continue;
            }
            out.tokens += m.tokens(enc, &mut || {});
            out.messages.push(m);
        }
        out.included_seqs.push(r.seq);
        for c in &r.msg.calls {
            for &j in answers.get(c.as_str()).into_iter().flatten() {
                if !placed[j] && j > i {
                    placed[j] = true;
                    out.messages.extend(rows[j].msg.messages.iter().cloned());
                    out.tokens += rows[j].tokens;
                    out.included_seqs.push(rows[j].seq);
                }
            }
        }
    }
    out.included_seqs.sort_unstable();
    out
}

/// A given array as a row source (for `build_context_from`): seq is the 1-based position.
pub struct SliceSource {
    rows: Vec<Row>,
    next: usize,
}

impl SliceSource {
    /// Expands and counts every message; returns the source, the total tokens, and the ids of
    /// tool results whose call does not come earlier in the array.
    pub fn new(msgs: Vec<Expanded>, enc: Encoding, interrupt: &mut dyn FnMut()) -> (Self, i64, HashSet<String>) {
        let mut made: HashSet<String> = HashSet::new();
        let mut orphans = HashSet::new();
        let mut total = 0;
        let mut rows = Vec::with_capacity(msgs.len());
        for (i, msg) in msgs.into_iter().enumerate() {
            if let Some(a) = &msg.answers {
                if !made.contains(a) {
                    orphans.insert(a.clone());
                }
            }
            made.extend(msg.calls.iter().cloned());
            let tokens = msg.tokens(enc, interrupt);
            total += tokens;
            rows.push(Row { seq: i as i64 + 1, tokens, msg });
        }
        rows.reverse();
        (SliceSource { rows, next: 0 }, total, orphans)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl RowSource for SliceSource {
    fn next_row(&mut self) -> Option<Row> {
        let r = self.rows.get(self.next).cloned();
        self.next += 1;
        r
    }
    fn count_between(&mut self, lo: i64, hi: i64) -> i64 {
        self.rows.iter().filter(|r| r.seq > lo && r.seq < hi).count() as i64
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
