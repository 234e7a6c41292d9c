//! Chat messages as OpenAI's `/chat/completions` accepts them, their framed token counts, and
//! the two stored tool-call shapes (OpenAI's and the original guide's combined records).
//!
//! Token convention (documented in the README): a message costs 3 tokens of framing, plus the
//! tokens of each string field it carries (role, content, name, tool_call_id), plus 1 for a
//! name, plus the tokens of its `tool_calls` array serialised as compact JSON with sorted keys.
//! A message list costs the sum plus 3 for reply priming. For plain messages this is exactly
//! the OpenAI cookbook's `num_tokens_from_messages`.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::error::{clip, MemError, Result};
use super::tokenizer::Encoding;

pub const TOKENS_PER_MESSAGE: i64 = 3;
pub const TOKENS_PER_NAME: i64 = 1;
pub const REPLY_PRIMING: i64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role> {
        match s {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "tool" => Ok(Role::Tool),
            other => Err(MemError::invalid(format!(
                "unknown role \"{}\": role must be one of user, assistant, system, tool",
                clip(other)
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a chat payload, always in OpenAI's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    pub name: Option<String>,
    /// OpenAI-shaped calls; never an empty array.
    pub tool_calls: Option<Vec<Value>>,
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage { role, content: content.into(), name: None, tool_calls: None, tool_call_id: None }
    }

    /// Framed tokens of this message (see the module comment).
    pub fn tokens(&self, enc: Encoding, interrupt: &mut dyn FnMut()) -> i64 {
        let mut n =
            TOKENS_PER_MESSAGE + enc.count(self.role.as_str()) as i64 + enc.count_with(&self.content, interrupt) as i64;
        if let Some(name) = &self.name {
            n += TOKENS_PER_NAME + enc.count(name) as i64;
        }
        if let Some(calls) = &self.tool_calls {
            n += enc.count_with(&canonical_json(&Value::Array(calls.clone())), interrupt) as i64;
        }
        if let Some(id) = &self.tool_call_id {
            n += enc.count(id) as i64;
        }
        n
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("role".into(), Value::String(self.role.as_str().into()));
        m.insert("content".into(), Value::String(self.content.clone()));
        if let Some(name) = &self.name {
            m.insert("name".into(), Value::String(name.clone()));
        }
        if let Some(calls) = &self.tool_calls {
            m.insert("tool_calls".into(), Value::Array(calls.clone()));
        }
        if let Some(id) = &self.tool_call_id {
            m.insert("tool_call_id".into(), Value::String(id.clone()));
        }
        Value::Object(m)
    }
}

/// Compact JSON with object keys sorted, so equal values always cost the same tokens whatever
/// key order they arrived in (jsonb reorders keys).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A stored message (a table row or an element of a given array) and the chat messages it
/// becomes. A guide-shaped tool record expands to an assistant message plus one tool message
/// per call; everything else is one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    pub messages: Vec<ChatMessage>,
    /// Ids of OpenAI-shaped calls this message makes, answered by later tool messages.
    pub calls: Vec<String>,
    /// The call a tool message answers.
    pub answers: Option<String>,
}

/// Fields of a stored message before validation.
#[derive(Debug, Clone, Default)]
pub struct RawMessage<'a> {
    pub role: &'a str,
    pub content: &'a str,
    pub name: Option<&'a str>,
    pub tool_calls: Option<&'a Value>,
    pub tool_call_id: Option<&'a str>,
}

impl RawMessage<'_> {
    /// Validates the message and expands it into OpenAI chat messages.
    pub fn expand(&self) -> Result<Expanded> {
        let role = Role::parse(self.role)?;
        if let Some(name) = self.name {
            validate_name(name)?;
        }
        match (role, self.tool_call_id) {
            (Role::Tool, None) => {
                return Err(MemError::invalid(
                    "a tool message needs tool_call_id: the id of the assistant tool call it answers",
                ))
            }
            (Role::Tool, Some("")) => return Err(MemError::invalid("tool_call_id must not be empty")),
            (r, Some(_)) if r != Role::Tool => {
                return Err(MemError::invalid(format!(
                    "tool_call_id belongs on tool messages only, not on a {} message",
                    r.as_str()
                )))
            }
            _ => {}
        }
        let mut first = ChatMessage {
            role,
            content: self.content.to_owned(),
            name: self.name.map(str::to_owned),
            tool_calls: None,
            tool_call_id: self.tool_call_id.map(str::to_owned),
        };
        let calls = match self.tool_calls {
            None | Some(Value::Null) => ToolCalls::None,
            Some(v) => {
                if role != Role::Assistant {
                    return Err(MemError::invalid(format!(
                        "tool_calls belong on assistant messages only, not on a {} message",
                        role.as_str()
                    )));
                }
                parse_tool_calls(v)?
            }
        };
        let answers = self.tool_call_id.map(str::to_owned);
        Ok(match calls {
            ToolCalls::None => Expanded { messages: vec![first], calls: vec![], answers },
            ToolCalls::OpenAi { calls, ids } => {
                first.tool_calls = Some(calls);
                Expanded { messages: vec![first], calls: ids, answers }
            }
            ToolCalls::Guide(records) => {
                let mut openai = Vec::with_capacity(records.len());
                let mut results = Vec::with_capacity(records.len());
                for r in records {
                    openai.push(serde_json::json!({
                        "id": r.id,
                        "type": "function",
                        "function": {"name": r.tool, "arguments": r.input},
                    }));
                    let mut tool = ChatMessage::new(Role::Tool, r.output);
                    tool.tool_call_id = Some(r.id);
                    results.push(tool);
                }
                first.tool_calls = Some(openai);
                let mut messages = vec![first];
                messages.extend(results);
                Expanded { messages, calls: vec![], answers }
            }
        })
    }
}

impl Expanded {
    pub fn tokens(&self, enc: Encoding, interrupt: &mut dyn FnMut()) -> i64 {
        self.messages.iter().map(|m| m.tokens(enc, interrupt)).sum()
    }
}

/// OpenAI's rule for `name`: 1–64 characters of letters, digits, `_` and `-`.
fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(MemError::invalid(format!(
            "invalid name \"{}\": a participant name is 1 to 64 letters, digits, '_' or '-'",
            clip(name)
        )))
    }
}

struct GuideRecord {
    id: String,
    tool: String,
    input: String,
    output: String,
}

enum ToolCalls {
    None,
    OpenAi { calls: Vec<Value>, ids: Vec<String> },
    Guide(Vec<GuideRecord>),
}

/// A JSON value as the text an LLM sees: strings as they are, anything else as compact JSON.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => canonical_json(other),
    }
}

fn non_empty_str<'v>(call: &'v Map<String, Value>, key: &str, i: usize) -> Result<&'v str> {
    match call.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(MemError::invalid(format!("tool_calls[{i}] needs a non-empty string \"{key}\""))),
    }
}

fn parse_tool_calls(v: &Value) -> Result<ToolCalls> {
    let Value::Array(items) = v else {
        return Err(MemError::invalid("tool_calls must be a JSON array of calls"));
    };
    if items.is_empty() {
        return Ok(ToolCalls::None);
    }
    let mut seen = HashSet::new();
    let mut openai = Vec::new();
    let mut guide = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(call) = item else {
            return Err(MemError::invalid(format!("tool_calls[{i}] must be an object")));
        };
        let id = non_empty_str(call, "id", i)?;
        if !seen.insert(id.to_owned()) {
            return Err(MemError::invalid(format!("duplicate tool call id \"{}\" in tool_calls", clip(id))));
        }
        if call.contains_key("function") {
            if call.get("type").and_then(Value::as_str) != Some("function") {
                return Err(MemError::invalid(format!("tool_calls[{i}].type must be \"function\"")));
            }
            let Some(Value::Object(f)) = call.get("function") else {
                return Err(MemError::invalid(format!("tool_calls[{i}].function must be an object")));
            };
            non_empty_str(f, "name", i).map_err(|_| {
                MemError::invalid(format!("tool_calls[{i}].function needs a non-empty string \"name\""))
            })?;
            if !matches!(f.get("arguments"), Some(Value::String(_))) {
                return Err(MemError::invalid(format!(
                    "tool_calls[{i}].function.arguments must be a string (JSON-encoded arguments)"
                )));
            }
            openai.push(id.to_owned());
        } else if call.contains_key("tool") {
            let tool = non_empty_str(call, "tool", i)?;
            let Some(output) = call.get("output") else {
                return Err(MemError::invalid(format!(
                    "tool_calls[{i}] is a combined tool record and needs its \"output\""
                )));
            };
            guide.push(GuideRecord {
                id: id.to_owned(),
                tool: tool.to_owned(),
                input: as_text(call.get("input").unwrap_or(&Value::Object(Map::new()))),
                output: as_text(output),
            });
        } else {
            return Err(MemError::invalid(format!(
                "tool_calls[{i}] is neither an OpenAI call ({{id, type, function: {{name, arguments}}}}) \
                 nor a combined tool record ({{id, tool, input, output}})"
            )));
        }
    }
    match (openai.is_empty(), guide.is_empty()) {
        (false, true) => Ok(ToolCalls::OpenAi { calls: items.clone(), ids: openai }),
        (true, false) => Ok(ToolCalls::Guide(guide)),
        _ => {
            Err(MemError::invalid("tool_calls mixes OpenAI calls and combined tool records; use one shape per message"))
        }
    }
}

/// Parses one element of an OpenAI-style messages array.
pub fn parse_message_json(v: &Value, index: usize) -> Result<Expanded> {
    let Value::Object(m) = v else {
        return Err(MemError::invalid(format!("messages[{index}] must be an object")));
    };
    let text = |key: &str| -> Result<Option<&str>> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(MemError::invalid(format!("messages[{index}].{key} must be a string"))),
        }
    };
    let role = text("role")?.ok_or_else(|| MemError::invalid(format!("messages[{index}] needs a \"role\"")))?;
    let raw = RawMessage {
        role,
        content: text("content")?.unwrap_or(""),
        name: text("name")?,
        tool_calls: m.get("tool_calls"),
        tool_call_id: text("tool_call_id")?,
    };
    raw.expand().map_err(|e| MemError { message: format!("messages[{index}]: {}", e.message), ..e })
}

/// Parses an OpenAI-style messages array.
pub fn parse_messages_json(v: &Value) -> Result<Vec<Expanded>> {
    let Value::Array(items) = v else {
        return Err(MemError::invalid("messages must be a JSON array of message objects"));
    };
    items.iter().enumerate().map(|(i, m)| parse_message_json(m, i)).collect()
}

/// `count_message_tokens`: the framed tokens of every message plus reply priming.
pub fn count_messages(msgs: &[Expanded], enc: Encoding, interrupt: &mut dyn FnMut()) -> i64 {
    REPLY_PRIMING + msgs.iter().map(|m| m.tokens(enc, interrupt)).sum::<i64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tok(m: &ChatMessage) -> i64 {
        m.tokens(Encoding::Cl100kBase, &mut || {})
    }

    #[test]
    fn cookbook_example_matches() {
        // The example conversation of OpenAI's cookbook "How to count tokens with tiktoken":
        // num_tokens_from_messages gives 129 for gpt-4 / gpt-3.5-turbo-0613 (cl100k_base).
        let msgs = json!([
          {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
          {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
          {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
          {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
          {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
          {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
        ]);
        let parsed = parse_messages_json(&msgs).unwrap();
        assert_eq!(count_messages(&parsed, Encoding::Cl100kBase, &mut || {}), 129);
    }

    #[test]
    fn plain_message_framing() {
        let m = ChatMessage::new(Role::User, "hello world");
        // 3 framing + "user" (1) + "hello world" (2)
        assert_eq!(tok(&m), 6);
        let mut named = m.clone();
        named.name = Some("bob".into());
        assert_eq!(tok(&named), 6 + 1 + 1);
    }

    #[test]
    fn guide_record_expands_to_call_and_result() {
        let calls = json!([{"id": "c1", "tool": "search", "input": {"q": "rust"}, "output": "found 3"}]);
        let e = RawMessage { role: "assistant", content: "", tool_calls: Some(&calls), ..Default::default() }
            .expand()
            .unwrap();
        assert_eq!(e.messages.len(), 2);
        assert_eq!(
            e.messages[0].tool_calls.as_ref().unwrap()[0],
            json!({"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"rust\"}"}})
        );
        assert_eq!(e.messages[1].role, Role::Tool);
        assert_eq!(e.messages[1].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(e.messages[1].content, "found 3");
        assert!(e.calls.is_empty(), "combined records answer themselves");
    }

    #[test]
    fn openai_calls_are_kept_as_given() {
        let calls = json!([{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                           {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{\"x\":1}"}}]);
        let e = RawMessage { role: "assistant", content: "", tool_calls: Some(&calls), ..Default::default() }
            .expand()
            .unwrap();
        assert_eq!(e.calls, vec!["a", "b"]);
        assert_eq!(e.messages[0].tool_calls.as_ref().unwrap(), calls.as_array().unwrap());
    }

    #[test]
    fn token_count_ignores_key_order() {
        let a = json!([{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]);
        let b: Value =
            serde_json::from_str(r#"[{"function": {"arguments": "{}", "name": "f"}, "type": "function", "id": "a"}]"#)
                .unwrap();
        let ta =
            RawMessage { role: "assistant", content: "", tool_calls: Some(&a), ..Default::default() }.expand().unwrap();
        let tb =
            RawMessage { role: "assistant", content: "", tool_calls: Some(&b), ..Default::default() }.expand().unwrap();
        assert_eq!(ta.tokens(Encoding::Cl100kBase, &mut || {}), tb.tokens(Encoding::Cl100kBase, &mut || {}));
    }

    #[test]
    fn rejects_malformed_messages() {
        let bad = |raw: RawMessage| raw.expand().unwrap_err().message;
        assert!(bad(RawMessage { role: "robot", ..Default::default() }).contains("unknown role"));
        assert!(bad(RawMessage { role: "tool", content: "x", ..Default::default() }).contains("needs tool_call_id"));
        assert!(bad(RawMessage { role: "user", tool_call_id: Some("x"), ..Default::default() })
            .contains("tool messages only"));
        assert!(
            bad(RawMessage { role: "user", name: Some("has space"), ..Default::default() }).contains("invalid name")
        );
        let cases = [
            (json!({"id": "a"}), "JSON array"),
            (json!([1]), "must be an object"),
            (json!([{"type": "function", "function": {"name": "f", "arguments": "{}"}}]), "\"id\""),
            (json!([{"id": "a", "type": "function", "function": {"arguments": "{}"}}]), "\"name\""),
            (
                json!([{"id": "a", "type": "function", "function": {"name": "f", "arguments": {}}}]),
                "arguments must be a string",
            ),
            (json!([{"id": "a", "function": {"name": "f", "arguments": "{}"}}]), "type must be"),
            (json!([{"id": "a", "tool": "t", "input": {}}]), "needs its \"output\""),
            (
                json!([{"id": "a", "tool": "t", "output": 1}, {"id": "a", "tool": "t", "output": 2}]),
                "duplicate tool call id",
            ),
            (
                json!([{"id": "a", "tool": "t", "output": 1}, {"id": "b", "type": "function", "function": {"name": "f", "arguments": ""}}]),
                "mixes",
            ),
            (json!([{"id": "a", "name": "f"}]), "neither"),
        ];
        for (calls, expect) in cases {
            let msg = bad(RawMessage { role: "assistant", tool_calls: Some(&calls), ..Default::default() });
            assert!(msg.contains(expect), "{calls}: {msg}");
        }
        let calls = json!([{"id": "a", "tool": "t", "output": 1}]);
        assert!(bad(RawMessage { role: "user", tool_calls: Some(&calls), ..Default::default() })
            .contains("assistant messages only"));
    }

    #[test]
    fn parses_message_arrays() {
        assert!(parse_messages_json(&json!({"role": "user"})).is_err());
        assert!(parse_messages_json(&json!([{"content": "x"}])).unwrap_err().message.contains("needs a \"role\""));
        assert!(parse_messages_json(&json!([{"role": "user", "content": 5}]))
            .unwrap_err()
            .message
            .contains("content must be a string"));
        let ok = parse_messages_json(&json!([{"role": "assistant", "content": null, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "42"}]))
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].answers.as_deref(), Some("a"));
    }
}
