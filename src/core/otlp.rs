//! Traces of LLM calls and jobs in OpenTelemetry's protocol (OTLP/HTTP, JSON encoding): the spans,
//! their attributes after the GenAI semantic conventions (`gen_ai.*`) and memory_ext's own
//! (`memory.*`), the export request's body, and its POST. Plain Rust: spans are built and sent on
//! threads that run nothing of PostgreSQL, after the answer is handed over, so a trace never delays
//! a turn or a job.
//!
//! Why not the `opentelemetry` SDK: its exporters bring an async runtime (or a batch thread of
//! their own) and a global provider, while here every send happens on a thread memory_ext starts
//! with all signals blocked (`core::threads`), once per call or job; the protocol's JSON encoding
//! is a few objects, written and tested below.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::llm::{endpoint_host, Answer, Failure, LlmError};

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Strs(Vec<String>),
}

impl Attr {
    fn to_otlp(&self) -> Value {
        match self {
            Attr::Str(s) => json!({ "stringValue": s }),
            // OTLP/JSON writes 64-bit integers as strings
            Attr::Int(i) => json!({ "intValue": i.to_string() }),
            Attr::Float(f) => json!({ "doubleValue": f }),
            Attr::Bool(b) => json!({ "boolValue": b }),
            Attr::Strs(v) => {
                json!({ "arrayValue": { "values": v.iter().map(|s| json!({ "stringValue": s })).collect::<Vec<_>>() } })
            }
        }
    }
}

pub type Attributes = Vec<(&'static str, Attr)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal = 1,
    Client = 3,
}

/// Where a span belongs: its trace, its own id and its parent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
}

impl SpanIds {
    /// A new trace's root span.
    pub fn root() -> SpanIds {
        SpanIds { trace_id: random(), span_id: random(), parent: None }
    }

    /// A new span under this one, in the same trace.
    pub fn child(&self) -> SpanIds {
        SpanIds { trace_id: self.trace_id, span_id: random(), parent: Some(self.span_id) }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub ids: SpanIds,
    pub name: String,
    pub kind: Kind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Attributes,
    /// Set when the operation failed: the span's status is then an error with this message.
    pub error: Option<String>,
}

impl Span {
    fn to_otlp(&self) -> Value {
        let mut span = json!({
            "traceId": hex(&self.ids.trace_id),
            "spanId": hex(&self.ids.span_id),
            "name": self.name,
            "kind": self.kind as i32,
            "startTimeUnixNano": unix_nanos(self.start).to_string(),
            "endTimeUnixNano": unix_nanos(self.end).to_string(),
            "attributes": self.attributes.iter().map(|(k, v)| json!({ "key": k, "value": v.to_otlp() })).collect::<Vec<_>>(),
            // STATUS_CODE_OK = 1, STATUS_CODE_ERROR = 2
            "status": match &self.error { Some(m) => json!({ "code": 2, "message": m }), None => json!({ "code": 1 }) },
        });
        if let Some(parent) = self.ids.parent {
            span["parentSpanId"] = json!(hex(&parent));
        }
        span
    }
}

/// The body of `POST /v1/traces` carrying `spans` of service `service`.
pub fn export_body(service: &str, spans: &[Span]) -> Value {
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": service } }] },
            "scopeSpans": [{
                "scope": { "name": "memory_ext", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans.iter().map(Span::to_otlp).collect::<Vec<_>>(),
            }],
        }],
    })
}

/// The traces URL of a collector's OTLP/HTTP endpoint (`http://host:4318` gets `/v1/traces`; a URL
/// that already names the path is used as it is).
pub fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

/// Posts one export request; the collector's refusal or silence is only reported, never retried
/// (a trace is not worth holding anything up for).
pub fn post(endpoint: &str, body: &Value, timeout: Duration) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent("memory_ext")
        .build()
        .into();
    let url = traces_url(endpoint);
    match agent.post(&url).header("Content-Type", "application/json").send(body.to_string()) {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!("the OTLP collector {} answered HTTP {}", endpoint_host(&url), resp.status().as_u16())),
        Err(e) => {
            Err(format!("sending traces to {} failed: {}", endpoint_host(&url), e.to_string().replace(&url, "…")))
        }
    }
}

/// What a call's span records besides the request and the answer: the caller's attributes
/// (`memory.*`), where it belongs, and whether it may carry the messages.
#[derive(Debug, Clone)]
pub struct CallTrace {
    pub ids: SpanIds,
    pub attributes: Attributes,
    /// `memory.otlp_content`: the request's messages and the answer go in the span.
    pub content: bool,
}

/// The span of one LLM call (`POST {base_url}/chat/completions`), named and attributed after the
/// GenAI semantic conventions: the request's model and parameters, the server, the answer's
/// model, id, finish reasons and token usage, or the error's type.
pub fn llm_span(
    trace: &CallTrace,
    base_url: &str,
    request: &Value,
    result: &Result<Answer, LlmError>,
    start: SystemTime,
    end: SystemTime,
) -> Span {
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    let host = endpoint_host(base_url);
    // an embeddings request has an input where a chat request has messages
    let operation = if request.get("input").is_some() { "embeddings" } else { "chat" };
    let mut attributes: Attributes = vec![
        ("gen_ai.operation.name", Attr::Str(operation.into())),
        ("gen_ai.provider.name", Attr::Str(provider_of(&host).into())),
        ("gen_ai.request.model", Attr::Str(model.clone())),
    ];
    let (address, port) = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<i64>().is_ok() => (h.to_owned(), p.parse::<i64>().ok()),
        _ => (host.clone(), None),
    };
    attributes.push(("server.address", Attr::Str(address)));
    if let Some(p) = port {
        attributes.push(("server.port", Attr::Int(p)));
    }
    if let Some(n) = request["max_tokens"].as_i64() {
        attributes.push(("gen_ai.request.max_tokens", Attr::Int(n)));
    }
    if let Some(t) = request["temperature"].as_f64() {
        attributes.push(("gen_ai.request.temperature", Attr::Float(t)));
    }
    attributes.extend(trace.attributes.iter().cloned());
    if trace.content {
        attributes.push(("gen_ai.input.messages", Attr::Str(request["messages"].to_string())));
    }
    let error = match result {
        Ok(answer) => {
            let json = &answer.json;
            if let Some(m) = json["model"].as_str() {
                attributes.push(("gen_ai.response.model", Attr::Str(m.to_owned())));
            }
            if let Some(id) = json["id"].as_str() {
                attributes.push(("gen_ai.response.id", Attr::Str(id.to_owned())));
            }
            let choices = json["choices"].as_array().cloned().unwrap_or_default();
            let reasons: Vec<String> =
                choices.iter().filter_map(|c| c["finish_reason"].as_str().map(str::to_owned)).collect();
            attributes.push(("gen_ai.response.finish_reasons", Attr::Strs(reasons)));
            for (key, field) in
                [("gen_ai.usage.input_tokens", "prompt_tokens"), ("gen_ai.usage.output_tokens", "completion_tokens")]
            {
                if let Some(n) = json["usage"][field].as_i64() {
                    attributes.push((key, Attr::Int(n)));
                }
            }
            if trace.content {
                let messages: Vec<Value> = choices.iter().map(|c| c["message"].clone()).collect();
                attributes.push(("gen_ai.output.messages", Attr::Str(Value::Array(messages).to_string())));
            }
            None
        }
        Err(e) => {
            attributes.push(("error.type", Attr::Str(error_type(e.failure))));
            Some(status_message(e, trace.content))
        }
    };
    Span { ids: trace.ids, name: format!("{operation} {model}"), kind: Kind::Client, start, end, attributes, error }
}

/// A failed span's status message: the error's text only when content may go in the trace (an
/// error may quote the provider's answer, or a value), else its type.
pub fn status_message(e: &LlmError, content: bool) -> String {
    if content {
        e.message.clone()
    } else {
        format!("failed: {}", error_type(e.failure))
    }
}

/// `error.type` of a failed call: the HTTP status code, or what kept an answer from arriving.
pub fn error_type(failure: Failure) -> String {
    match failure {
        Failure::Http(status) => status.to_string(),
        Failure::Connect => "connection_error".into(),
        Failure::Timeout => "timeout".into(),
        Failure::Malformed => "malformed_response".into(),
        Failure::Refused => "refusal".into(),
        Failure::Other => "_OTHER".into(),
    }
}

/// `gen_ai.provider.name` for an OpenAI-compatible endpoint, by its host.
fn provider_of(host: &str) -> &'static str {
    if host.contains("groq.com") {
        "groq"
    } else if host.contains("mistral.ai") {
        "mistral_ai"
    } else if host.contains("deepseek.com") {
        "deepseek"
    } else {
        // the protocol spoken: OpenAI's, whoever serves it
        "openai"
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Random ids from the kernel (getrandom(2) works on any thread); never all zero, which OTLP
/// reads as "no id".
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    loop {
        // SAFETY: writes at most N bytes into the buffer it is given.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), N, 0) };
        if n == N as isize && bytes.iter().any(|&b| b != 0) {
            return bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: Value) -> Answer {
        Answer { text: json.to_string(), json, latency: Duration::from_millis(12) }
    }

    fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
        span["attributes"].as_array().unwrap().iter().find(|a| a["key"] == key).map(|a| &a["value"])
    }

    fn trace(content: bool) -> CallTrace {
        CallTrace {
            ids: SpanIds::root().child(),
            attributes: vec![("memory.call.kind", Attr::Str("chat".into())), ("memory.window.tokens", Attr::Int(42))],
            content,
        }
    }

    const REQUEST: &str = r#"{"model":"llama-3.3-70b-versatile","max_tokens":512,"temperature":0.5,"messages":[{"role":"user","content":"secret plans"}]}"#;

    #[test]
    fn an_answered_call_is_a_client_span_with_the_genai_attributes() {
        let request: Value = serde_json::from_str(REQUEST).unwrap();
        let ok = answer(json!({"id": "chatcmpl-7", "model": "llama-3.3-70b-versatile-0912",
            "choices": [{"message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}}));
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = trace(false);
        let span =
            llm_span(&t, "https://api.groq.com/openai/v1", &request, &Ok(ok), t0, t0 + Duration::from_millis(250));
        let body = export_body("memory_ext", &[span]);
        let s = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["name"], "chat llama-3.3-70b-versatile");
        assert_eq!(s["kind"], 3);
        assert_eq!(s["status"]["code"], 1);
        assert_eq!(s["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(s["endTimeUnixNano"], "1700000000250000000");
        assert_eq!(s["traceId"].as_str().unwrap().len(), 32);
        assert_eq!(s["parentSpanId"].as_str().unwrap(), hex(&t.ids.parent.unwrap()));
        assert_eq!(attr(s, "gen_ai.provider.name").unwrap()["stringValue"], "groq");
        assert_eq!(attr(s, "server.address").unwrap()["stringValue"], "api.groq.com");
        assert_eq!(attr(s, "gen_ai.request.max_tokens").unwrap()["intValue"], "512");
        assert_eq!(attr(s, "gen_ai.request.temperature").unwrap()["doubleValue"], 0.5);
        assert_eq!(attr(s, "gen_ai.response.model").unwrap()["stringValue"], "llama-3.3-70b-versatile-0912");
        assert_eq!(attr(s, "gen_ai.response.id").unwrap()["stringValue"], "chatcmpl-7");
        assert_eq!(
            attr(s, "gen_ai.response.finish_reasons").unwrap()["arrayValue"]["values"][0]["stringValue"],
            "stop"
        );
        assert_eq!(attr(s, "gen_ai.usage.input_tokens").unwrap()["intValue"], "30");
        assert_eq!(attr(s, "gen_ai.usage.output_tokens").unwrap()["intValue"], "5");
        assert_eq!(attr(s, "memory.window.tokens").unwrap()["intValue"], "42");
        assert_eq!(body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"], "memory_ext");
        // no content unless asked for
        assert!(!body.to_string().contains("secret plans") && !body.to_string().contains("\"done\""));
    }

    #[test]
    fn content_goes_in_only_when_asked_for() {
        let request: Value = serde_json::from_str(REQUEST).unwrap();
        let ok = answer(
            json!({"choices": [{"message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}]}),
        );
        let span = llm_span(&trace(true), "http://127.0.0.1:8080/v1", &request, &Ok(ok), UNIX_EPOCH, UNIX_EPOCH);
        let body = export_body("svc", &[span]);
        let s = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert!(attr(s, "gen_ai.input.messages").unwrap()["stringValue"].as_str().unwrap().contains("secret plans"));
        assert!(attr(s, "gen_ai.output.messages").unwrap()["stringValue"].as_str().unwrap().contains("done"));
        assert_eq!(attr(s, "gen_ai.provider.name").unwrap()["stringValue"], "openai");
        assert_eq!(attr(s, "server.port").unwrap()["intValue"], "8080");
    }

    #[test]
    fn a_failed_call_has_an_error_status_and_type() {
        let request: Value = serde_json::from_str(REQUEST).unwrap();
        for (failure, kind) in
            [(Failure::Http(429), "429"), (Failure::Timeout, "timeout"), (Failure::Connect, "connection_error")]
        {
            let span = llm_span(
                &trace(false),
                "http://h/v1",
                &request,
                &Err(LlmError::of(failure, "boom")),
                UNIX_EPOCH,
                UNIX_EPOCH,
            );
            let s = &export_body("svc", &[span])["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
            assert_eq!(s["status"], json!({"code": 2, "message": format!("failed: {kind}")}));
            assert_eq!(attr(s, "error.type").unwrap()["stringValue"], kind);
            assert!(attr(s, "gen_ai.usage.input_tokens").is_none());
            // the error's own text (which may quote the provider's answer) only with content on
            let span = llm_span(
                &trace(true),
                "http://h/v1",
                &request,
                &Err(LlmError::of(failure, "boom")),
                UNIX_EPOCH,
                UNIX_EPOCH,
            );
            assert_eq!(
                export_body("svc", &[span])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["status"]["message"],
                "boom"
            );
        }
    }

    #[test]
    fn ids_are_random_and_children_share_the_trace() {
        let root = SpanIds::root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_eq!(child.parent, Some(root.span_id));
        assert_ne!(child.span_id, root.span_id);
        assert_ne!(SpanIds::root().trace_id, root.trace_id);
        assert!(root.parent.is_none());
    }

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(traces_url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://127.0.0.1:4318/"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("https://otel.example.com/v1/traces"), "https://otel.example.com/v1/traces");
    }
}
