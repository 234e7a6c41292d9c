//! Running an LLM call on a thread of its own, so that the backend or worker that waits for it
//! keeps serving interrupts (cancel, statement_timeout, shutdown, postmaster death), and so that
//! the worker can have several calls in flight at once.
//!
//! The call's thread runs plain Rust only (HTTP, JSON): nothing of PostgreSQL — no palloc, elog,
//! SPI, latch or interrupt check — and it blocks every signal from its first instruction (see
//! `core::threads`), so no PostgreSQL or pgrx signal handler ever runs on it.

use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::traces::Exporter;
use crate::core::llm::{complete, Answer, LlmConfig, LlmError};
use crate::core::otlp::{llm_span, CallTrace};
use crate::core::threads::spawn_without_signals;
use crate::gucs;

/// The endpoint and key of the operator's settings.
pub fn config() -> LlmConfig {
    LlmConfig {
        base_url: gucs::string(&gucs::LLM_BASE_URL).unwrap_or_default(),
        api_key: gucs::string(&gucs::LLM_API_KEY),
        timeout: Duration::from_millis(gucs::LLM_TIMEOUT.get() as u64),
        path: "/chat/completions",
    }
}

/// The same provider's embeddings endpoint.
pub fn embedding_config() -> LlmConfig {
    LlmConfig { path: "/embeddings", ..config() }
}

/// A call in flight: its answer arrives on the channel. Dropping it abandons the call (its thread
/// ends by itself within `memory.llm_timeout`).
pub struct InFlight(mpsc::Receiver<Result<Answer, LlmError>>);

pub enum Poll {
    Done(Result<Answer, LlmError>),
    Waiting,
}

impl InFlight {
    /// The answer, if it has arrived.
    pub fn poll(&self) -> Poll {
        self.wait(Duration::ZERO)
    }

    /// Waits up to `timeout` for the answer.
    pub fn wait(&self, timeout: Duration) -> Poll {
        match self.0.recv_timeout(timeout) {
            Ok(result) => Poll::Done(result),
            Err(mpsc::RecvTimeoutError::Timeout) => Poll::Waiting,
            Err(mpsc::RecvTimeoutError::Disconnected) => Poll::Done(Err(ended_without_answer())),
        }
    }
}

fn ended_without_answer() -> LlmError {
    LlmError::new("the LLM call ended without an answer")
}

/// Starts the call on a thread that no signal can reach. With a trace, the same thread sends the
/// call's span once the answer is handed over.
pub fn start(cfg: LlmConfig, body: Value, trace: Option<(Exporter, CallTrace)>) -> InFlight {
    let (tx, rx) = mpsc::channel();
    let spawned = spawn_without_signals("memory_ext llm call", move || {
        let started = SystemTime::now();
        let result = complete(&cfg, &body);
        let span = trace
            .map(|(exporter, t)| (exporter, llm_span(&t, &cfg.base_url, &body, &result, started, SystemTime::now())));
        let _ = tx.send(result);
        if let Some((exporter, span)) = span {
            exporter.send_here(&[span]);
        }
    });
    if let Err(e) = spawned {
        // the sender went with the closure: poll() reports the failure
        let (tx, rx) = mpsc::channel();
        let _ = tx.send(Err(LlmError::new(format!("could not start the LLM call's thread: {e}"))));
        return InFlight(rx);
    }
    InFlight(rx)
}

/// Makes the call and waits for it, running `between` every 10 ms; `between` may raise an error
/// or exit the process, abandoning the call.
pub fn call_waiting(
    cfg: LlmConfig,
    body: Value,
    trace: Option<(Exporter, CallTrace)>,
    mut between: impl FnMut(),
) -> Result<Answer, LlmError> {
    let call = start(cfg, body, trace);
    loop {
        match call.wait(Duration::from_millis(10)) {
            Poll::Done(result) => return result,
            Poll::Waiting => between(),
        }
    }
}
