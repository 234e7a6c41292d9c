//! The OpenAI-compatible `POST {base_url}/chat/completions` call (and `/embeddings`, the same
//! way), with a bounded timeout, and the classification of its failures. Plain Rust: the worker
//! calls it with no transaction open, and `memory.chat` on a thread of its own while the backend
//! watches for cancellation.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct LlmConfig {
    pub base_url: String,
    /// None: no Authorization header (a local server that needs no key).
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// What is appended to base_url: `/chat/completions`, or `/embeddings`.
    pub path: &'static str,
}

/// What kind of failure an LLM call ended in; the synchronous chat maps it to a SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The endpoint could not be reached (refused, DNS, TLS, reset).
    Connect,
    /// `memory.llm_timeout` passed before the whole answer arrived.
    Timeout,
    /// The endpoint answered with this non-2xx status.
    Http(u16),
    /// 2xx, but not a usable answer (not JSON, no choices, no message).
    Malformed,
    /// The model declined (`message.refusal`).
    Refused,
    Other,
}

/// Why an LLM call gave nothing usable; recorded in a job or raised, never stored as a message.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmError {
    pub message: String,
    /// The server's Retry-After, when it sent one.
    pub retry_after: Option<Duration>,
    pub failure: Failure,
}

impl LlmError {
    pub fn new(message: impl Into<String>) -> Self {
        LlmError::of(Failure::Other, message)
    }
    pub fn of(failure: Failure, message: impl Into<String>) -> Self {
        LlmError { message: message.into(), retry_after: None, failure }
    }
}

/// A 2xx JSON answer.
pub struct Answer {
    pub json: Value,
    pub text: String,
    pub latency: Duration,
}

/// Reads the status and body of an answer: a non-2xx status or a body that is not JSON is an
/// error quoting at most 200 characters of the body.
pub fn read_answer(status: u16, retry_after: Option<&str>, body: &str) -> Result<Value, LlmError> {
    let snippet: String = body.chars().take(200).collect();
    if !(200..300).contains(&status) {
        return Err(LlmError {
            message: format!("HTTP {status} from the LLM endpoint: {snippet}"),
            retry_after: retry_after.and_then(|s| s.trim().parse::<u64>().ok()).map(Duration::from_secs),
            failure: Failure::Http(status),
        });
    }
    serde_json::from_str(body).map_err(|e| {
        LlmError::of(Failure::Malformed, format!("the LLM endpoint answered with invalid JSON ({e}): {snippet}"))
    })
}

/// One HTTP agent per process (rebuilt when the timeout setting changes): building one sets up
/// TLS with its root certificates, which costs milliseconds per call; it also keeps connections
/// to the endpoint alive between calls.
fn agent(timeout: Duration) -> ureq::Agent {
    static CACHE: Mutex<Option<(Duration, ureq::Agent)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match &*cache {
        Some((t, a)) if *t == timeout => a.clone(),
        _ => {
            let a: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .user_agent("memory_ext")
                .build()
                .into();
            *cache = Some((timeout, a.clone()));
            a
        }
    }
}

/// What an error text may say about an endpoint: its host (and port), never a user name, password,
/// path or query string that the configured URL may carry.
pub fn endpoint_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        "the LLM endpoint".to_owned()
    } else {
        host.to_owned()
    }
}

pub fn complete(cfg: &LlmConfig, body: &Value) -> Result<Answer, LlmError> {
    let started = Instant::now();
    let agent = agent(cfg.timeout);
    let url = format!("{}{}", cfg.base_url.trim_end_matches('/'), cfg.path);
    let host = endpoint_host(&url);
    let mut request = agent.post(&url).header("Content-Type", "application/json");
    // The key goes in this header only; error texts below never contain it.
    if let Some(key) = &cfg.api_key {
        request = request.header("Authorization", &format!("Bearer {key}"));
    }
    // The client's own error text may quote the URL: only the host is kept.
    let failed = |e: ureq::Error, what: &str| match e {
        ureq::Error::Timeout(_) => LlmError::of(
            Failure::Timeout,
            format!(
                "{what} {host} timed out: no whole answer within memory.llm_timeout ({} ms)",
                cfg.timeout.as_millis()
            ),
        ),
        e => LlmError::of(
            Failure::Connect,
            format!("{what} {host} failed: {}", e.to_string().replace(&url, &host).replace(&cfg.base_url, &host)),
        ),
    };
    let mut resp = request.send(body.to_string()).map_err(|e| failed(e, "calling"))?;
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = resp.body_mut().read_to_string().map_err(|e| failed(e, "reading the answer of"))?;
    let json = read_answer(status, retry_after.as_deref(), &text)?;
    Ok(Answer { json, text, latency: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_name_the_host_only() {
        assert_eq!(
            endpoint_host("https://user:pw@api.example.com:8443/v1/chat/completions?key=s"),
            "api.example.com:8443"
        );
        assert_eq!(endpoint_host("http://127.0.0.1:9/v1"), "127.0.0.1:9");
        assert_eq!(endpoint_host("api.groq.com/openai/v1#frag"), "api.groq.com");
        assert_eq!(endpoint_host(""), "the LLM endpoint");
    }

    #[test]
    fn a_failed_call_quotes_no_credentials() {
        let cfg = LlmConfig {
            base_url: "http://alice:hunter2@127.0.0.1:9/v1?token=s3cret".into(),
            api_key: Some("sk-never".into()),
            timeout: Duration::from_millis(500),
            path: "/chat/completions",
        };
        let e = complete(&cfg, &serde_json::json!({})).err().expect("nothing listens on port 9");
        for secret in ["alice", "hunter2", "s3cret", "sk-never", "/v1"] {
            assert!(!e.message.contains(secret), "{secret} in: {}", e.message);
        }
        assert!(e.message.contains("127.0.0.1:9"), "{}", e.message);
    }
}
