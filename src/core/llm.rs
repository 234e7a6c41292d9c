//! The OpenAI-compatible `POST {base_url}/chat/completions` call, with a bounded timeout.
//! Plain Rust: the worker calls it with no transaction open, from its main thread.

use std::time::Duration;

use serde_json::Value;

use super::summary::{parse_response, LlmError};

pub struct LlmConfig {
    pub base_url: String,
    pub api_key: String,
    pub timeout: Duration,
}

pub fn complete(cfg: &LlmConfig, body: &Value) -> Result<String, LlmError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(cfg.timeout))
        .http_status_as_error(false)
        .user_agent("memory_ext")
        .build()
        .into();
    let url = format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'));
    // The key goes in this header only; error texts below never contain it.
    let result = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {}", cfg.api_key))
        .send(body.to_string());
    let mut resp = result.map_err(|e| LlmError::new(format!("calling {url} failed: {e}")))?;
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| LlmError::new(format!("reading the answer of {url} failed: {e}")))?;
    parse_response(status, retry_after.as_deref(), &text)
}
