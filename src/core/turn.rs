//! A chat turn with the LLM: the `/chat/completions` request an agent sends (its context window,
//! tools and reply budget) and the assistant message read back from the answer. No pgrx, no I/O.

use serde_json::{json, Map, Value};

use super::chat::canonical_json;
use super::llm::{Failure, LlmError};
use super::tokenizer::Encoding;

/// An agent's settings for one turn; the defaults stand when a conversation has no agent row.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnSettings {
    pub agent_id: Option<String>,
    pub system_prompt: Option<String>,
    pub model: String,
    pub tools: Value,
    pub max_context_tokens: i64,
    pub reply_max_tokens: i64,
    pub temperature: f64,
}

/// For a conversation without an agent: the agents table's column defaults (a pg_test checks they
/// agree).
pub const DEFAULT_MAX_CONTEXT_TOKENS: i64 = 8000;
pub const DEFAULT_REPLY_MAX_TOKENS: i64 = 2000;
pub const DEFAULT_TEMPERATURE: f64 = 0.7;

/// Tokens the tool definitions take in the prompt: their compact JSON (keys sorted) in the
/// conversation's encoding. Providers do not publish their exact framing of tools; this counts
/// every byte they are sent, so a window plus this stays within the model's context.
pub fn tools_tokens(tools: &Value, enc: Encoding) -> i64 {
    match tools.as_array() {
        Some(a) if !a.is_empty() => enc.count(&canonical_json(tools)) as i64,
        _ => 0,
    }
}

/// The context budget of a turn: the agent's window minus the reply's room and the tools.
pub fn context_budget(s: &TurnSettings, tools_tokens: i64) -> Result<i64, String> {
    let budget = s.max_context_tokens - s.reply_max_tokens - tools_tokens;
    if budget <= 0 {
        return Err(format!(
            "the agent leaves no room for the conversation: max_context_tokens {} - reply_max_tokens {} - tools {} tokens = {budget}",
            s.max_context_tokens, s.reply_max_tokens, tools_tokens
        ));
    }
    Ok(budget)
}

/// The request of one turn: the window's messages with the agent's model, tools and reply budget.
pub fn request_body(s: &TurnSettings, messages: &Value) -> Value {
    let mut body = json!({
        "model": s.model,
        "messages": messages,
        "max_tokens": s.reply_max_tokens,
        "temperature": s.temperature,
    });
    if s.tools.as_array().is_some_and(|a| !a.is_empty()) {
        body["tools"] = s.tools.clone();
        body["tool_choice"] = json!("auto");
    }
    body
}

/// A token count as an `integer` column stores it: past i32::MAX it is clamped, never wrapped.
pub fn column_count(n: i64) -> i32 {
    n.clamp(0, i64::from(i32::MAX)) as i32
}

/// Token usage as the provider reported it (absent fields stay None).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
}

impl Usage {
    pub fn from_answer(v: &Value) -> Usage {
        let u = &v["usage"];
        let n = |k: &str| u.get(k).and_then(Value::as_i64).filter(|n| *n >= 0);
        let (p, c) = (n("prompt_tokens"), n("completion_tokens"));
        let total = n("total_tokens").or(match (p, c) {
            (Some(p), Some(c)) => Some(p + c),
            _ => None,
        });
        Usage { prompt_tokens: p, completion_tokens: c, total_tokens: total }
    }

    /// Prompt, completion and total tokens as the usage columns store them.
    pub fn columns(&self) -> [Option<i32>; 3] {
        [self.prompt_tokens, self.completion_tokens, self.total_tokens].map(|n| n.map(column_count))
    }

    pub fn to_json(&self) -> Value {
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
               "total_tokens": self.total_tokens})
    }
}

/// The assistant message of an answer, as it will be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub content: String,
    /// OpenAI `tool_calls`, exactly as returned; None when the model called nothing.
    pub tool_calls: Option<Value>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
}

fn malformed(why: &str, body: &str) -> LlmError {
    let snippet: String = body.chars().take(200).collect();
    LlmError::of(Failure::Malformed, format!("the LLM answer is unusable: {why}: {snippet}"))
}

/// Reads a `/chat/completions` answer (already known to be HTTP 2xx JSON) into the assistant
/// message to store. A refusal, an empty answer or malformed tool calls are errors: nothing of
/// them is ever stored as a message.
pub fn parse_reply(v: &Value, body: &str) -> Result<Reply, LlmError> {
    let choice = v.get("choices").and_then(|c| c.get(0)).ok_or_else(|| malformed("no choices[0]", body))?;
    let msg =
        choice.get("message").filter(|m| m.is_object()).ok_or_else(|| malformed("no choices[0].message", body))?;
    if let Some(r) = msg.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        let r: String = r.chars().take(200).collect();
        return Err(LlmError::of(Failure::Refused, format!("the model refused to answer: {r}")));
    }
    let content = match msg.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(malformed("message.content is not a string", body)),
    };
    let tool_calls = match msg.get("tool_calls") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(Value::Array(a)) => {
            for c in a {
                check_call(c).map_err(|why| malformed(&why, body))?;
            }
            Some(Value::Array(a.clone()))
        }
        Some(_) => return Err(malformed("message.tool_calls is not an array", body)),
    };
    if content.trim().is_empty() && tool_calls.is_none() {
        return Err(malformed("the assistant message has neither content nor tool calls", body));
    }
    Ok(Reply {
        content,
        tool_calls,
        finish_reason: choice.get("finish_reason").and_then(Value::as_str).map(str::to_owned),
        usage: Usage::from_answer(v),
    })
}

fn check_call(c: &Value) -> Result<(), String> {
    let obj: &Map<String, Value> = c.as_object().ok_or("a tool call is not an object")?;
    let id = obj.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or("a tool call has no id")?;
    let f = obj.get("function").and_then(Value::as_object).ok_or_else(|| format!("tool call {id} has no function"))?;
    f.get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("tool call {id} has no name"))?;
    f.get("arguments").and_then(Value::as_str).ok_or_else(|| format!("tool call {id} has no string arguments"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tools: Value) -> TurnSettings {
        TurnSettings {
            agent_id: None,
            system_prompt: Some("Be brief.".into()),
            model: "m".into(),
            tools,
            max_context_tokens: 8000,
            reply_max_tokens: 2000,
            temperature: 0.7,
        }
    }

    #[test]
    fn request_sends_tools_only_when_there_are_some() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        let plain = request_body(&settings(json!([])), &msgs);
        assert!(plain.get("tools").is_none() && plain.get("tool_choice").is_none());
        assert_eq!(plain["max_tokens"], 2000);
        let tool = json!([{"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}}]);
        let with = request_body(&settings(tool.clone()), &msgs);
        assert_eq!(with["tools"], tool);
        assert_eq!(with["tool_choice"], "auto");
    }

    #[test]
    fn budget_leaves_room_for_reply_and_tools() {
        let s = settings(json!([]));
        assert_eq!(context_budget(&s, 100), Ok(5900));
        assert!(context_budget(&s, 6000).unwrap_err().contains("no room"));
        assert_eq!(tools_tokens(&json!([]), Encoding::Cl100kBase), 0);
        assert!(tools_tokens(&json!([{"type": "function", "function": {"name": "clock"}}]), Encoding::Cl100kBase) > 5);
    }

    #[test]
    fn reads_content_tool_calls_and_usage() {
        let body = r#"{"choices":[{"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],
                       "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        let v: Value = serde_json::from_str(body).unwrap();
        let r = parse_reply(&v, body).unwrap();
        assert_eq!((r.content.as_str(), r.finish_reason.as_deref()), ("Hello", Some("stop")));
        assert_eq!(r.usage.total_tokens, Some(15));

        let body = r#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"clock","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#;
        let v: Value = serde_json::from_str(body).unwrap();
        let r = parse_reply(&v, body).unwrap();
        assert_eq!(r.content, "");
        assert_eq!(r.tool_calls.unwrap()[0]["id"], "call_1");
        assert_eq!(r.usage, Usage::default());
    }

    #[test]
    fn refusals_empty_answers_and_bad_calls_are_errors() {
        let cases = [
            (r#"{"choices":[]}"#, Failure::Malformed),
            (r#"{"choices":[{"message":{"content":"  "}}]}"#, Failure::Malformed),
            (r#"{"choices":[{"message":{"content":null,"refusal":"I can't help with that."}}]}"#, Failure::Refused),
            (r#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"x"}]}}]}"#, Failure::Malformed),
            (r#"{"choices":[{"message":{"content":7}}]}"#, Failure::Malformed),
        ];
        for (body, kind) in cases {
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(parse_reply(&v, body).unwrap_err().failure, kind, "{body}");
        }
    }
}
