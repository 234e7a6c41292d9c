//! Traces of LLM calls and jobs, sent to `memory.otlp_endpoint` when it is set (see core::otlp):
//! the settings read on the backend's or worker's main thread, and the sends, each on a thread of
//! its own that runs nothing of PostgreSQL. A send that fails is kept as the last error, which the
//! worker reports in the server log (a thread cannot log).

use std::sync::Mutex;
use std::time::Duration;

use crate::core::otlp::{self, export_body, Attributes, CallTrace, Span, SpanIds};
use crate::core::threads::spawn_without_signals;
use crate::gucs;

/// How long one export may take; a slow collector costs a thread's time, never a turn's.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
const SERVICE: &str = "memory_ext";

static LAST_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Where spans go, when tracing is on.
#[derive(Clone)]
pub struct Exporter {
    endpoint: String,
}

impl Exporter {
    /// The exporter of the current settings; None when `memory.otlp_endpoint` is not set.
    pub fn current() -> Option<Exporter> {
        gucs::string(&gucs::OTLP_ENDPOINT).filter(|e| !e.trim().is_empty()).map(|endpoint| Exporter { endpoint })
    }

    /// Sends the spans from a thread of its own; returns at once.
    pub fn send(&self, spans: Vec<Span>) {
        let exporter = self.clone();
        let spawned = spawn_without_signals("memory_ext otlp export", move || exporter.send_here(&spans));
        if let Err(e) = spawned {
            remember(format!("could not start the thread that sends traces: {e}"));
        }
    }

    /// Sends the spans from the calling thread (which must be one memory_ext started).
    pub fn send_here(&self, spans: &[Span]) {
        if let Err(e) = otlp::post(&self.endpoint, &export_body(SERVICE, spans), SEND_TIMEOUT) {
            remember(e);
        }
    }
}

fn remember(error: String) {
    *LAST_ERROR.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
}

/// The last send's error since the previous call, if one failed.
pub fn take_error() -> Option<String> {
    LAST_ERROR.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// The trace of an LLM call about to start (None when tracing is off): where its span goes, its
/// place in a trace, and the caller's attributes.
pub fn call_trace(
    ids: impl FnOnce() -> SpanIds,
    attributes: impl FnOnce() -> Attributes,
) -> Option<(Exporter, CallTrace)> {
    let exporter = Exporter::current()?;
    Some((exporter, CallTrace { ids: ids(), attributes: attributes(), content: gucs::OTLP_CONTENT.get() }))
}
