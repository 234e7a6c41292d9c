//! The summary worker (SPEC §5): claims a job in a short transaction, calls the LLM with no
//! transaction open, writes the summary in a new transaction. Failures are recorded in the job
//! and retried with backoff; an error text is never stored as a summary.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::Uuid;

use crate::api::stored::{message_row, MESSAGE_COLUMNS};
use crate::core::llm::{complete, LlmConfig};
use crate::core::summary::{backoff, choose_cut, extractive, request_body, LlmError, EXTRACTIVE_MODEL};
use crate::core::tokenizer::Encoding;
use crate::core::window::Row;
use crate::gucs;

pub fn register() {
    BackgroundWorkerBuilder::new("memory_ext summary worker")
        .set_type("memory_ext summary worker")
        .set_library("memory_ext")
        .set_function("memory_ext_worker_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

struct Job {
    id: i64,
    conversation_id: Uuid,
    attempts: i32,
    encoding: Encoding,
    previous: Option<String>,
    rows: Vec<Row>,
}

enum Outcome {
    Summary { covers_through_seq: i64, content: String, model: String },
    NothingToDo,
    Failed(LlmError),
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn memory_ext_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = gucs::string(&gucs::WORKER_DATABASE).unwrap_or_else(|| "postgres".into());
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    log!("memory_ext summary worker started in database \"{db}\"");
    BackgroundWorker::transaction(recover_interrupted_jobs);
    // (sigterm_received() clears the flag it reads, so the decision to stop is kept here.)
    let mut stopping = false;
    while !stopping && BackgroundWorker::wait_latch(Some(Duration::from_millis(gucs::WORKER_NAPTIME.get() as u64))) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a background worker to reload its settings.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        loop {
            if BackgroundWorker::sigterm_received() {
                stopping = true;
                break;
            }
            let Some(job) = BackgroundWorker::transaction(claim_job) else { break };
            let outcome = run(&job);
            BackgroundWorker::transaction(|| finish(&job, outcome));
        }
    }
    // Exit code 1 asks the postmaster for a restart after the restart time: a worker stopped by
    // pg_terminate_backend comes back; at server shutdown nothing is restarted anyway.
    log!("memory_ext summary worker stopped");
    unsafe { pg_sys::proc_exit(1) };
}

fn installed(c: &SpiClient) -> bool {
    c.select("SELECT 1 FROM pg_extension WHERE extname = 'memory_ext'", None, &[])
        .map(|t| !t.is_empty())
        .unwrap_or(false)
}

/// A job left `running` belonged to a worker that died: queue it again (or fail it, when out of
/// attempts).
fn recover_interrupted_jobs() {
    Spi::connect_mut(|c| {
        if !installed(c) {
            return;
        }
        c.update(
            "UPDATE memory.summary_jobs SET status = CASE WHEN attempts >= $1 THEN 'failed' ELSE 'queued' END,
                    last_error = 'interrupted: the worker stopped during this attempt', updated_at = now()
              WHERE status = 'running'",
            None,
            &[gucs::MAX_ATTEMPTS.get().into()],
        )
        .expect("recovering interrupted summary jobs");
    })
}

fn claim_job() -> Option<Job> {
    Spi::connect_mut(|c| {
        if !installed(c) {
            return None;
        }
        let claimed = c
            .update(
                "UPDATE memory.summary_jobs j
                    SET status = 'running', attempts = j.attempts + 1, updated_at = now()
                  WHERE j.id = (SELECT q.id FROM memory.summary_jobs q
                                 WHERE q.status = 'queued' AND q.run_after <= now()
                                 ORDER BY q.run_after, q.id
                                 LIMIT 1 FOR UPDATE SKIP LOCKED)
              RETURNING j.id, j.conversation_id, j.attempts,
                        (SELECT c.encoding FROM memory.conversations c WHERE c.id = j.conversation_id)",
                None,
                &[],
            )
            .expect("claiming a summary job");
        if claimed.is_empty() {
            return None;
        }
        let row = claimed.first();
        let id: i64 = row.get(1).ok()??;
        let conversation_id: Uuid = row.get(2).ok()??;
        let attempts: i32 = row.get(3).ok()??;
        let encoding = Encoding::resolve(&row.get::<String>(4).ok()??).ok()?;

        let prev = c
            .select(
                "SELECT content, covers_through_seq FROM memory.conversation_summaries
                  WHERE conversation_id = $1 ORDER BY covers_through_seq DESC, id DESC LIMIT 1",
                None,
                &[conversation_id.into()],
            )
            .expect("reading the previous summary");
        let (previous, covered) = if prev.is_empty() {
            (None, 0)
        } else {
            let p = prev.first();
            (p.get::<String>(1).ok().flatten(), p.get::<i64>(2).ok().flatten().unwrap_or(0))
        };
        let msgs = c
            .select(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM memory.conversation_messages
                      WHERE conversation_id = $1 AND seq > $2 ORDER BY seq"
                ),
                None,
                &[conversation_id.into(), covered.into()],
            )
            .expect("reading the messages to summarize");
        // A stored message that no longer validates is left out of the summary, not fatal.
        let rows: Vec<Row> = msgs
            .into_iter()
            .filter_map(|m| message_row(&m).expect("decoding a stored message").ok())
            .collect();
        Some(Job { id, conversation_id, attempts, encoding, previous, rows })
    })
}

/// Everything between claiming and finishing: no transaction is open here.
fn run(job: &Job) -> Outcome {
    let Some(cut) = choose_cut(&job.rows, i64::from(gucs::SUMMARY_KEEP_TOKENS.get())) else {
        return Outcome::NothingToDo;
    };
    let rows: Vec<Row> = job.rows.iter().filter(|r| r.seq <= cut).cloned().collect();
    let max_tokens = gucs::SUMMARY_MAX_TOKENS.get();
    let model = gucs::string(&gucs::LLM_MODEL).unwrap_or_default();
    let result = match gucs::string(&gucs::LLM_API_KEY) {
        None => Ok((extractive(job.previous.as_deref(), &rows, job.encoding, max_tokens), EXTRACTIVE_MODEL.to_owned())),
        Some(api_key) => {
            let cfg = LlmConfig {
                base_url: gucs::string(&gucs::LLM_BASE_URL).unwrap_or_default(),
                api_key,
                timeout: Duration::from_millis(gucs::LLM_TIMEOUT.get() as u64),
            };
            let body = request_body(&model, job.previous.as_deref(), &rows, max_tokens);
            complete(&cfg, &body).map(|content| (content, model))
        }
    };
    match result {
        Ok((content, model)) => Outcome::Summary { covers_through_seq: cut, content, model },
        Err(e) => Outcome::Failed(e),
    }
}

fn finish(job: &Job, outcome: Outcome) {
    Spi::connect_mut(|c| {
        match outcome {
            Outcome::Summary { covers_through_seq, content, model } => {
                // FOR KEY SHARE: a conversation deleted meanwhile (its job went with it) ends
                // cleanly with nothing written; one being deleted waits for this commit.
                c.update(
                    "WITH conv AS (SELECT id FROM memory.conversations WHERE id = $1 FOR KEY SHARE)
                     INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
                     SELECT id, $2, $3, $4 FROM conv",
                    None,
                    &[job.conversation_id.into(), covers_through_seq.into(), content.into(), model.into()],
                )
                .expect("storing the summary");
                c.update(
                    "UPDATE memory.summary_jobs SET status = 'done', last_error = NULL, updated_at = now() WHERE id = $1",
                    None,
                    &[job.id.into()],
                )
                .expect("finishing the summary job");
            }
            Outcome::NothingToDo => {
                c.update(
                    "UPDATE memory.summary_jobs SET status = 'done', last_error = 'nothing to summarize: every message is among the newest kept verbatim', updated_at = now() WHERE id = $1",
                    None,
                    &[job.id.into()],
                )
                .expect("finishing the summary job");
            }
            Outcome::Failed(e) => {
                let wait = backoff(job.attempts, Duration::from_millis(gucs::RETRY_BACKOFF.get() as u64), e.retry_after);
                warning!("memory_ext: summary job {} attempt {} failed: {}", job.id, job.attempts, e.message);
                c.update(
                    "UPDATE memory.summary_jobs
                        SET status = CASE WHEN attempts >= $2 THEN 'failed' ELSE 'queued' END,
                            last_error = $3,
                            run_after = now() + make_interval(secs => $4),
                            updated_at = now()
                      WHERE id = $1",
                    None,
                    &[job.id.into(), gucs::MAX_ATTEMPTS.get().into(), e.message.into(), wait.as_secs_f64().into()],
                )
                .expect("recording the failed attempt");
            }
        }
    })
}
