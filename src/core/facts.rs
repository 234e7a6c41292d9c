//! Long-term memory: what an extract job asks the LLM, and how its answer becomes decisions
//! about the user's facts (add, update, delete, in the manner of mem0). No pgrx, no I/O.

use serde_json::{json, Value};

use super::chat::{ChatMessage, Role};
use super::llm::{Failure, LlmError};
use super::summary::clipped;

/// Longest fact, in characters (memory.facts' CHECK).
pub const MAX_FACT_CHARS: usize = 1000;
/// Most decisions one answer may hold: more is not an answer to this prompt.
pub const MAX_DECISIONS: usize = 50;
/// Most known facts an extraction weighs the new messages against.
pub const KNOWN_FACTS: i32 = 50;
/// Characters of one message the extractor is shown.
const PROMPT_CHARS_PER_MESSAGE: usize = 4_000;

const INSTRUCTIONS: &str = "You maintain the long-term memory facts about a user of an AI assistant. \
You are given the facts known so far, numbered, and new messages of a conversation. Find what the \
user's own messages (lines marked [user]) say about the user that stays useful later: preferences, \
circumstances, plans, relationships, constraints. Decide, for each such statement: ADD a new fact; \
UPDATE a known fact that the new messages change or contradict (give its number and the new text); \
DELETE a known fact the user says is no longer true. Ignore what the assistant says and anything \
about other people's private data. Each fact is one short sentence in the third person (\"The user \
...\"). Answer with JSON only: {\"facts\": [{\"event\": \"ADD\", \"text\": \"...\"}, {\"event\": \
\"UPDATE\", \"id\": 2, \"text\": \"...\"}, {\"event\": \"DELETE\", \"id\": 3}]} and {\"facts\": []} \
when there is nothing to remember.";

/// One message an extraction reads.
pub struct Said<'a> {
    pub role: &'a str,
    pub content: &'a str,
    /// A user message of the conversation's owner (others' are context only).
    pub from_owner: bool,
}

/// What the LLM decided about one fact; `known` are 0-based indexes into the known facts.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Add { content: String },
    Update { known: usize, content: String },
    Delete { known: usize },
}

/// The `/chat/completions` request of one extraction.
pub fn request_body(model: &str, known: &[String], messages: &[Said]) -> Value {
    let mut user = String::from("Known facts:\n");
    if known.is_empty() {
        user.push_str("(none)\n");
    }
    for (i, f) in known.iter().enumerate() {
        user.push_str(&format!("{}. {f}\n", i + 1));
    }
    user.push_str("\nNew messages:\n");
    for m in messages {
        let who = match (m.role, m.from_owner) {
            ("user", true) => "user",
            ("user", false) => "another participant",
            _ => "assistant",
        };
        user.push_str(&format!("[{who}] {}\n", clipped(m.content, PROMPT_CHARS_PER_MESSAGE)));
    }
    json!({
        "model": model,
        "messages": [
            ChatMessage::new(Role::System, INSTRUCTIONS).to_json(),
            ChatMessage::new(Role::User, user).to_json(),
        ],
        "temperature": 0,
        "response_format": {"type": "json_object"},
    })
}

fn malformed(why: impl Into<String>) -> LlmError {
    LlmError::of(Failure::Malformed, why.into())
}

/// The JSON inside an answer's content, without a Markdown code fence around it.
fn unfenced(content: &str) -> &str {
    let t = content.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

fn fact_text(item: &Value) -> Result<String, LlmError> {
    let text = item.get("text").or_else(|| item.get("content")).and_then(Value::as_str).map(str::trim).unwrap_or("");
    match text.chars().count() {
        0 => Err(malformed(format!("a fact decision without text: {item}"))),
        n if n > MAX_FACT_CHARS => Err(malformed(format!("a fact of {n} characters (at most {MAX_FACT_CHARS})"))),
        _ => Ok(text.to_owned()),
    }
}

fn known_index(item: &Value, known: usize) -> Result<usize, LlmError> {
    let id = item.get("id");
    let n = id.and_then(Value::as_u64).or_else(|| id.and_then(Value::as_str).and_then(|s| s.trim().parse().ok()));
    match n {
        Some(n) if n >= 1 && (n as usize) <= known => Ok(n as usize - 1),
        _ => Err(malformed(format!("a fact decision names no known fact (1 to {known}): {item}"))),
    }
}

/// The decisions in an answer (choices[0].message.content holding `{"facts": [...]}`, or the
/// array alone). Anything else, an unknown event, a number that is not a known fact, or an
/// empty or overlong text is a malformed answer: the job is retried, and nothing is written.
pub fn parse_decisions(answer: &Value, known: usize) -> Result<Vec<Decision>, LlmError> {
    let content = answer
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the LLM answer has no choices[0].message.content"))?;
    let parsed: Value = serde_json::from_str(unfenced(content))
        .map_err(|e| malformed(format!("the fact decisions are not JSON ({e})")))?;
    let items = match &parsed {
        Value::Array(items) => items,
        Value::Object(o) => match o.get("facts").or_else(|| o.get("memory")) {
            Some(Value::Array(items)) => items,
            _ => return Err(malformed("the fact decisions have no \"facts\" array")),
        },
        _ => return Err(malformed("the fact decisions are not a JSON object")),
    };
    if items.len() > MAX_DECISIONS {
        return Err(malformed(format!("{} fact decisions in one answer (at most {MAX_DECISIONS})", items.len())));
    }
    let mut out = Vec::new();
    for item in items {
        let event = item.get("event").or_else(|| item.get("op")).and_then(Value::as_str).unwrap_or("");
        match event.to_ascii_uppercase().as_str() {
            "ADD" => out.push(Decision::Add { content: fact_text(item)? }),
            "UPDATE" => out.push(Decision::Update { known: known_index(item, known)?, content: fact_text(item)? }),
            "DELETE" => out.push(Decision::Delete { known: known_index(item, known)? }),
            "NONE" => {}
            _ => return Err(malformed(format!("unknown fact decision \"{event}\""))),
        }
    }
    Ok(out)
}

/// The decisions as memory._apply_facts takes them, the known facts named by their ids.
pub fn decisions_json(decisions: &[Decision], known_ids: &[String]) -> Value {
    Value::Array(
        decisions
            .iter()
            .map(|d| match d {
                Decision::Add { content } => json!({"op": "add", "content": content}),
                Decision::Update { known, content } => {
                    json!({"op": "update", "id": known_ids[*known], "content": content})
                }
                Decision::Delete { known } => json!({"op": "delete", "id": known_ids[*known]}),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(content: &str) -> Value {
        json!({"choices": [{"message": {"role": "assistant", "content": content}}]})
    }

    #[test]
    fn decisions_are_read_with_or_without_a_fence() {
        let a = answer("```json\n{\"facts\": [{\"event\": \"ADD\", \"text\": \" The user has a dog. \"}, {\"event\": \"update\", \"id\": 1, \"text\": \"The user lives in Oslo.\"}, {\"event\": \"DELETE\", \"id\": \"2\"}, {\"event\": \"NONE\"}]}\n```");
        let d = parse_decisions(&a, 2).unwrap();
        assert_eq!(
            d,
            vec![
                Decision::Add { content: "The user has a dog.".into() },
                Decision::Update { known: 0, content: "The user lives in Oslo.".into() },
                Decision::Delete { known: 1 },
            ]
        );
        let ids = ["a".to_owned(), "b".to_owned()];
        assert_eq!(
            decisions_json(&d, &ids),
            json!([{"op": "add", "content": "The user has a dog."},
                   {"op": "update", "id": "a", "content": "The user lives in Oslo."},
                   {"op": "delete", "id": "b"}])
        );
        assert_eq!(parse_decisions(&answer("[]"), 0).unwrap(), vec![]);
    }

    #[test]
    fn a_bad_answer_is_malformed_and_decides_nothing() {
        for bad in [
            "not json",
            "{\"facts\": 3}",
            "{\"facts\": [{\"event\": \"UPDATE\", \"id\": 3, \"text\": \"x\"}]}",
            "{\"facts\": [{\"event\": \"DELETE\", \"id\": 0}]}",
            "{\"facts\": [{\"event\": \"ADD\", \"text\": \"  \"}]}",
            "{\"facts\": [{\"event\": \"MERGE\", \"text\": \"x\"}]}",
        ] {
            let e = parse_decisions(&answer(bad), 2).unwrap_err();
            assert_eq!(e.failure, Failure::Malformed, "{bad}");
        }
        let long = format!("{{\"facts\": [{{\"event\": \"ADD\", \"text\": \"{}\"}}]}}", "x".repeat(1001));
        assert!(parse_decisions(&answer(&long), 0).is_err());
        assert!(parse_decisions(&json!({"choices": []}), 0).is_err());
    }

    #[test]
    fn the_request_numbers_known_facts_and_marks_who_spoke() {
        let body = request_body(
            "m",
            &["The user likes tea.".into()],
            &[
                Said { role: "user", content: "I moved to Oslo", from_owner: true },
                Said { role: "user", content: "I am Bob", from_owner: false },
                Said { role: "assistant", content: "Nice", from_owner: false },
            ],
        );
        let user = body["messages"][1]["content"].as_str().unwrap();
        assert!(user.contains("1. The user likes tea."));
        assert!(user.contains("[user] I moved to Oslo\n[another participant] I am Bob\n[assistant] Nice"));
        assert_eq!(body["response_format"]["type"], "json_object");
    }
}
