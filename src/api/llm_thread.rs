//! Running an LLM call on a thread of its own, so that the backend or worker that waits for it
//! keeps serving interrupts (cancel, statement_timeout, shutdown, postmaster death).

use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::core::llm::{complete, Answer, LlmConfig, LlmError};
use crate::gucs;

/// The endpoint and key of the operator's settings.
pub fn config() -> LlmConfig {
    LlmConfig {
        base_url: gucs::string(&gucs::LLM_BASE_URL).unwrap_or_default(),
        api_key: gucs::string(&gucs::LLM_API_KEY),
        timeout: Duration::from_millis(gucs::LLM_TIMEOUT.get() as u64),
    }
}

/// Waits for the call, running `between` every 10 ms; `between` may raise an error or exit the
/// process, abandoning the call (its thread ends by itself within `memory.llm_timeout`). The
/// thread blocks every signal: they are the backend's, and its handlers must run on its own
/// thread.
pub fn call_waiting(cfg: LlmConfig, body: Value, mut between: impl FnMut()) -> Result<Answer, LlmError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: plain libc calls on this new thread's own signal mask.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        }
        let _ = tx.send(complete(&cfg, &body));
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(result) => return result,
            Err(mpsc::RecvTimeoutError::Timeout) => between(),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(LlmError::new("the LLM call ended without an answer"))
            }
        }
    }
}
