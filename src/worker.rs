//! The background worker: claims jobs of the queue (`memory.jobs`) in short transactions and
//! dispatches on their kind. A summary or reply job is prepared in a transaction (its window read,
//! its LLM call recorded as `pending` in `memory.llm_calls`), its LLM call then runs on a thread of
//! its own with no transaction open, and its answer is stored in a new transaction: the summary,
//! or the assistant's message unless the conversation changed meanwhile (then it recomputes). An
//! embed job is the same with the provider's `/embeddings` endpoint: a batch of a conversation's
//! messages without a vector, stored whole or not at all. An extract job sends a conversation's
//! unread finished turns and its owner's known facts to `/chat/completions` and writes the facts
//! the LLM decided on, with the conversation's progress mark, in one transaction.
//! Up to `memory.worker_concurrency` calls are in flight at once, at most
//! `memory.worker_user_concurrency` of them for one user; the next job always comes from the
//! waiting user served longest ago. Failures are recorded in the job and retried with backoff; an
//! error text is never stored as a summary. An error while handling one job is recorded in that
//! job and never stops the worker.
//!
//! Every call's usage row exists before the call starts: a worker that dies while calls are in
//! flight leaves them `pending`, and the restarted worker marks them `unknown` (the provider may
//! have answered and billed them) and queues their jobs again without spending an attempt.

use std::collections::{HashMap, HashSet};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::time::{Duration, Instant, SystemTime};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{PgSqlErrorCode, Uuid};
use serde_json::Value;

use crate::api::charges;
use crate::api::context::{load_conversation, TurnRequest};
use crate::api::llm_thread::{self, config, InFlight, Poll};
use crate::api::stored::{message_row, MESSAGE_COLUMNS, NEWEST_SUMMARY};
use crate::api::traces;
use crate::core::embedding::{self, parse_embeddings, vector_literal};
use crate::core::facts::{self, decisions_json, parse_decisions, Said};
use crate::core::llm::{Answer, LlmError};
use crate::core::otlp::{self, Attr, Attributes, Kind, Span, SpanIds};
use crate::core::retry::backoff;
use crate::core::summary::{choose_cut, extractive, request_body, summary_content, EXTRACTIVE_MODEL};
use crate::core::tokenizer::Encoding;
use crate::core::turn::{column_count, parse_reply, Reply, Usage};
use crate::core::window::Row;
use crate::gucs;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;

/// How often the worker looks for answers while calls are in flight.
const POLL: Duration = Duration::from_millis(5);
/// How long any worker statement waits for a row lock before giving up: a user who holds a lock
/// on their own rows (an open transaction, `SELECT … FOR UPDATE`) delays only their own job, which
/// is tried again shortly, never everyone else's.
const LOCK_TIMEOUT: &str = "1s";
/// How long an answer whose rows stay locked is kept and retried before the job counts as failed.
const DEFER_LIMIT: Duration = Duration::from_secs(60);
const DEFER_RETRY: Duration = Duration::from_millis(500);
/// How often the worker adds the newest messages to the analytics' daily figures, and how many
/// conversations one pass takes (a full pass is followed by another at once).
const ROLLUP_INTERVAL: Duration = Duration::from_secs(1);
const ROLLUP_BATCH: i32 = 500;

pub fn register() {
    BackgroundWorkerBuilder::new("memory_ext worker")
        .set_type("memory_ext worker")
        .set_library("memory_ext")
        .set_function("memory_ext_worker_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// A job marked `running` (committed): whatever happens next is recorded in it.
struct Claimed {
    id: i64,
    kind: String,
    conversation_id: Uuid,
    user_id: Uuid,
    /// Failed attempts so far (an interrupted worker does not count).
    attempts: i32,
    encoding: Encoding,
    total_tokens: i64,
    /// The job's span (memory.otlp_endpoint): its LLM call's span is a child of it.
    trace: SpanIds,
    claimed_at: SystemTime,
}

struct Job {
    encoding: Encoding,
    previous: Option<String>,
    /// The first batch of messages after the previous summary, oldest first.
    rows: Vec<Row>,
    /// Stored tokens of the messages after the batch.
    tail_tokens: i64,
    /// Calls made in the batch whose results come after it.
    answered_later: HashSet<String>,
}

/// What an answer is for.
enum Work {
    Summary {
        covers_through_seq: i64,
        model: String,
    },
    /// The conversation's last seq when the window was built: the answer is stale when it moved.
    Reply {
        last_seq: i64,
    },
    /// The messages sent, in the order of the inputs.
    Embed {
        ids: Vec<Uuid>,
        inputs: Vec<String>,
        model: String,
    },
    /// The batch read through `through_seq`, the owner's messages in it, and the known facts' ids
    /// in the order the prompt numbers them.
    Extract {
        through_seq: i64,
        sources: Vec<Uuid>,
        known: Vec<String>,
    },
}

/// What preparing a job gave: an LLM call to make (its usage row already `pending`), or an
/// outcome reached without one.
enum Prepared {
    /// `attributes`: what the call's span says of its window (memory.otlp_endpoint).
    Call {
        work: Work,
        body: Value,
        call_id: i64,
        attributes: Attributes,
    },
    Finished(Outcome),
}

/// A job whose LLM call is in flight.
struct Running {
    job: Claimed,
    work: Work,
    call_id: i64,
    call: InFlight,
}

/// What the provider reported about one call, for its `memory.llm_calls` row.
#[derive(Clone)]
struct Call {
    id: i64,
    usage: Usage,
    latency_ms: f64,
}

enum Outcome {
    Summary { covers_through_seq: i64, content: String, model: String, call: Option<Call> },
    Reply { reply: Reply, last_seq: i64, call: Call },
    Embeddings { ids: Vec<Uuid>, inputs: Vec<String>, vectors: Vec<Vec<f32>>, model: String, call: Call },
    Facts { through_seq: i64, sources: Vec<Uuid>, decisions: Value, call: Option<Call> },
    NothingToDo(&'static str),
    Failed(LlmError, Option<Call>),
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn memory_ext_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = gucs::string(&gucs::WORKER_DATABASE).unwrap_or_else(|| "postgres".into());
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    log!("memory_ext worker started in database \"{db}\"");
    BackgroundWorker::transaction(|| {
        Spi::run(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'")).expect("setting the worker's lock_timeout");
        recover_interrupted_jobs();
    });
    // (sigterm_received() clears the flag it reads, so the decision to stop is kept here.)
    let mut stopping = false;
    let mut retention = Pacer::new();
    let mut rollup = Pacer::new();
    let mut running: Vec<Running> = Vec::new();
    let mut deferred: Vec<Deferred> = Vec::new();
    loop {
        let nap = if running.is_empty() && deferred.is_empty() {
            Duration::from_millis(gucs::WORKER_NAPTIME.get() as u64)
        } else {
            POLL
        };
        if stopping || !BackgroundWorker::wait_latch(Some(nap)) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a background worker to reload its settings.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        finish_answered(&mut running, &mut deferred);
        retry_deferred(&mut deferred);
        write_rolled_back_charges();
        roll_up_days(&mut rollup);
        // the threads that send traces cannot log; the last failure is reported here, once
        if let Some(e) = traces::take_error() {
            warning!("memory_ext: {e}");
        }
        loop {
            if BackgroundWorker::sigterm_received() {
                stopping = true;
                break;
            }
            // A worker must not outlive a crashed postmaster: it would hold shared memory and
            // block the restart.
            if !postmaster_alive() {
                log!("memory_ext worker: the postmaster died; exiting");
                unsafe { pg_sys::proc_exit(1) };
            }
            if running.len() >= gucs::WORKER_CONCURRENCY.get() as usize {
                break;
            }
            let claimed = match try_transaction(|| claim_job(&saturated_users(&running))) {
                Ok(Some(claimed)) => claimed,
                Ok(None) => {
                    enqueue_retention(&mut retention);
                    break;
                }
                Err(e) => {
                    warning!("memory_ext: claiming a job failed: {e}");
                    break;
                }
            };
            if let Some(started) = start(claimed, &mut retention, &mut deferred) {
                running.push(started);
            }
            finish_answered(&mut running, &mut deferred);
        }
    }
    if !running.is_empty() || !deferred.is_empty() {
        log!(
            "memory_ext worker stopping with {} LLM calls in flight and {} answers not yet stored; their jobs will be redone",
            running.len(),
            deferred.len()
        );
        let jobs: Vec<i64> = running.iter().map(|r| r.job.id).chain(deferred.iter().map(|d| d.job.id)).collect();
        let calls: Vec<i64> = running
            .iter()
            .map(|r| r.call_id)
            .chain(deferred.iter().filter_map(|d| call_of(&d.outcome).map(|c| c.id)))
            .collect();
        if let Err(e) = try_transaction(|| release(&jobs, &calls)) {
            warning!("memory_ext: queueing the interrupted jobs again failed: {e}");
        }
    }
    // Exit code 1 asks the postmaster for a restart after the restart time: a worker stopped by
    // pg_terminate_backend comes back; at server shutdown nothing is restarted anyway.
    log!("memory_ext worker stopped");
    unsafe { pg_sys::proc_exit(1) };
}

/// The users whose jobs hold `memory.worker_user_concurrency` calls already.
fn saturated_users(running: &[Running]) -> Vec<Uuid> {
    let cap = gucs::WORKER_USER_CONCURRENCY.get() as usize;
    let mut per_user: HashMap<Uuid, usize> = HashMap::new();
    for r in running {
        *per_user.entry(r.job.user_id).or_default() += 1;
    }
    per_user.into_iter().filter(|&(_, n)| n >= cap).map(|(u, _)| u).collect()
}

/// Writes the calls of memory.chat turns whose transactions rolled back (see api/charges.rs) as
/// usage rows of their own, charged to their callers' day, and counts each turn's message in its
/// caller's minute.
fn write_rolled_back_charges() {
    let (pending, dropped) = charges::pending();
    if dropped > 0 {
        warning!("memory_ext: the charges of {dropped} rolled-back chat turns were lost: the ledger was full");
    }
    let Some(last) = pending.last().map(|c| c.seq) else {
        return;
    };
    let written = try_transaction(|| {
        Spi::connect_mut(|c| {
            for charge in &pending {
                let error = charge.failed.then_some("no usable answer (timed out or unreadable)");
                c.update(
                    "INSERT INTO memory.llm_calls (conversation_id, user_id, agent_id, kind, model, prompt_tokens,
                                                   completion_tokens, total_tokens, local_prompt_tokens, latency_ms,
                                                   status, error)
                     VALUES ((SELECT c.id FROM memory.conversations c WHERE c.id = $1), $2, $3, 'chat', $4, $5, $6, $7,
                             $8, $9, 'rolled_back', $10)",
                    None,
                    &[
                        Uuid::from_bytes(charge.conversation).into(),
                        Uuid::from_bytes(charge.user).into(),
                        charge.agent.map(Uuid::from_bytes).into(),
                        charge.model().into(),
                        charge.prompt_tokens.into(),
                        charge.completion_tokens.into(),
                        charge.total_tokens.into(),
                        charge.local_prompt_tokens.into(),
                        charge.latency_ms.into(),
                        error.into(),
                    ],
                )
                .expect("recording a rolled-back call");
                // the turn's message, undone, still counts in the minute the call was made
                c.update(
                    "SELECT memory._add_minute_messages($1, 1, to_timestamp($2 * 60))",
                    None,
                    &[Uuid::from_bytes(charge.user).into(), (charge.minute as f64).into()],
                )
                .expect("counting a rolled-back turn's message");
            }
        })
    });
    match written {
        Ok(()) => charges::forget_through(last),
        Err(e) => warning!("memory_ext: recording the calls of rolled-back chat turns failed: {e}"),
    }
}

/// Prepares a claimed job and starts its LLM call; a job that needs no call is finished here.
fn start(job: Claimed, retention: &mut Pacer, deferred: &mut Vec<Deferred>) -> Option<Running> {
    let prepared = match job.kind.as_str() {
        "summary" => try_transaction(|| prepare_summary(&job)),
        "reply" => try_transaction(|| prepare_reply(&job)),
        "embed" => try_transaction(|| prepare_embed(&job)),
        "extract" => try_transaction(|| prepare_extract(&job)),
        "retention" => try_transaction(run_retention).map(|(outcome, more)| {
            retention.more_due = more;
            Prepared::Finished(outcome)
        }),
        other => Err(TxError { message: format!("unknown job kind \"{other}\""), locked: false }),
    };
    match prepared {
        Ok(Prepared::Call { work, body, call_id, attributes }) => {
            let trace = traces::call_trace(
                || job.trace.child(),
                || {
                    let mut all = job_attributes(&job);
                    all.push(("memory.call.kind", Attr::Str(job.kind.clone())));
                    all.push(("memory.llm_call.id", Attr::Int(call_id)));
                    all.extend(attributes);
                    all
                },
            );
            let endpoint = if matches!(work, Work::Embed { .. }) { llm_thread::embedding_config() } else { config() };
            Some(Running { call: llm_thread::start(endpoint, body, trace), job, work, call_id })
        }
        Ok(Prepared::Finished(outcome)) => {
            settle(job, outcome, deferred);
            None
        }
        Err(e) if e.locked => {
            if let Err(e) = try_transaction(|| requeue_locked(&job)) {
                warning!("memory_ext: queueing job {} again failed: {e}", job.id);
            }
            None
        }
        Err(e) => {
            let failed = Outcome::Failed(LlmError::new(format!("{} job failed: {e}", job.kind)), None);
            settle(job, failed, deferred);
            None
        }
    }
}

/// Finishes every job whose answer has arrived.
fn finish_answered(running: &mut Vec<Running>, deferred: &mut Vec<Deferred>) {
    let mut k = 0;
    while k < running.len() {
        match running[k].call.poll() {
            Poll::Waiting => k += 1,
            Poll::Done(result) => {
                let r = running.swap_remove(k);
                let outcome = outcome_of(r.work, r.call_id, result);
                settle(r.job, outcome, deferred);
            }
        }
    }
}

/// An answer whose rows were locked by another transaction when the worker came to store it:
/// kept, and stored once the lock is gone.
struct Deferred {
    job: Claimed,
    outcome: Outcome,
    since: Instant,
    next_try: Instant,
}

/// Writes an outcome in a transaction of its own. When a row it needs stays locked, the outcome is
/// deferred; when it fails otherwise, the failure is recorded instead.
fn settle(job: Claimed, outcome: Outcome, deferred: &mut Vec<Deferred>) {
    let now = Instant::now();
    settle_or_defer(Deferred { job, outcome, since: now, next_try: now }, deferred);
}

fn settle_or_defer(mut d: Deferred, deferred: &mut Vec<Deferred>) {
    let failure = match try_transaction(|| finish(&d.job, &d.outcome)) {
        Ok(()) => return trace_job(&d.job, &d.outcome),
        Err(e) if e.locked && d.since.elapsed() < DEFER_LIMIT => {
            d.next_try = Instant::now() + DEFER_RETRY;
            deferred.push(d);
            return;
        }
        Err(e) => e,
    };
    // Recorded in the job like an LLM failure (the call's usage kept): retried with backoff,
    // then failed.
    let failed =
        Outcome::Failed(LlmError::new(format!("{} job failed: {failure}", d.job.kind)), call_of(&d.outcome).cloned());
    if let Err(e2) = try_transaction(|| finish(&d.job, &failed)) {
        warning!("memory_ext: recording the failure of job {} failed: {e2}", d.job.id);
    }
    trace_job(&d.job, &failed);
}

/// What every span of a job says of it.
fn job_attributes(job: &Claimed) -> Attributes {
    let mut attributes = vec![
        ("memory.job.id", Attr::Int(job.id)),
        ("memory.job.kind", Attr::Str(job.kind.clone())),
        ("memory.job.attempt", Attr::Int(i64::from(job.attempts) + 1)),
    ];
    if job.kind != "retention" {
        attributes.push(("memory.conversation.id", Attr::Str(job.conversation_id.to_string())));
    }
    attributes
}

/// Sends a settled job's span (memory.otlp_endpoint): from its claim to its outcome's commit.
fn trace_job(job: &Claimed, outcome: &Outcome) {
    let Some(exporter) = traces::Exporter::current() else {
        return;
    };
    let (result, failure) = match outcome {
        Outcome::Summary { .. } | Outcome::Reply { .. } | Outcome::Embeddings { .. } | Outcome::Facts { .. } => {
            ("done", None)
        }
        Outcome::NothingToDo(_) => ("nothing_to_do", None),
        Outcome::Failed(e, _) => ("error", Some(e)),
    };
    let mut attributes = job_attributes(job);
    attributes.push(("memory.job.outcome", Attr::Str(result.into())));
    if let Some(e) = failure {
        attributes.push(("error.type", Attr::Str(otlp::error_type(e.failure))));
    }
    exporter.send(vec![Span {
        ids: job.trace,
        name: format!("memory.job {}", job.kind),
        kind: Kind::Internal,
        start: job.claimed_at,
        end: SystemTime::now(),
        attributes,
        error: failure.map(|e| otlp::status_message(e, gucs::OTLP_CONTENT.get())),
    }]);
}

/// The LLM call an outcome records, if it made one.
fn call_of(outcome: &Outcome) -> Option<&Call> {
    match outcome {
        Outcome::Summary { call: Some(c), .. }
        | Outcome::Reply { call: c, .. }
        | Outcome::Embeddings { call: c, .. }
        | Outcome::Facts { call: Some(c), .. }
        | Outcome::Failed(_, Some(c)) => Some(c),
        _ => None,
    }
}

/// Tries the deferred answers that are due again.
fn retry_deferred(deferred: &mut Vec<Deferred>) {
    let now = Instant::now();
    let (due, waiting): (Vec<Deferred>, Vec<Deferred>) = deferred.drain(..).partition(|d| d.next_try <= now);
    *deferred = waiting;
    for d in due {
        settle_or_defer(d, deferred);
    }
}

/// A job whose preparation waited too long for a lock: queued again for a moment later, without
/// spending an attempt (no LLM call was made).
fn requeue_locked(job: &Claimed) {
    Spi::connect_mut(|c| {
        c.update(
            "SELECT memory._requeue_jobs(ARRAY[$1], 'waiting: a row it needs is locked by another transaction',
                                         interval '2 seconds')",
            None,
            &[job.id.into()],
        )
        .expect("queueing the job again");
    })
}

/// The outcome of an answered call.
fn outcome_of(work: Work, call_id: i64, result: Result<Answer, LlmError>) -> Outcome {
    let answer = match result {
        Err(e) => return Outcome::Failed(e, Some(Call { id: call_id, usage: Usage::default(), latency_ms: 0.0 })),
        Ok(answer) => answer,
    };
    let latency_ms = answer.latency.as_secs_f64() * 1000.0;
    let call = |usage| Call { id: call_id, usage, latency_ms };
    match work {
        Work::Summary { covers_through_seq, model } => match summary_content(&answer.json, &answer.text) {
            Ok(content) => Outcome::Summary {
                covers_through_seq,
                content,
                model,
                call: Some(call(Usage::from_answer(&answer.json))),
            },
            Err(e) => Outcome::Failed(e, Some(call(Usage::from_answer(&answer.json)))),
        },
        Work::Reply { last_seq } => match parse_reply(&answer.json, &answer.text) {
            Ok(reply) => {
                let usage = reply.usage.clone();
                Outcome::Reply { reply, last_seq, call: call(usage) }
            }
            Err(e) => Outcome::Failed(e, Some(call(Usage::from_answer(&answer.json)))),
        },
        Work::Embed { ids, inputs, model } => match parse_embeddings(&answer.json, ids.len()) {
            Ok(vectors) => {
                Outcome::Embeddings { ids, inputs, vectors, model, call: call(Usage::from_answer(&answer.json)) }
            }
            Err(e) => Outcome::Failed(e, Some(call(Usage::from_answer(&answer.json)))),
        },
        Work::Extract { through_seq, sources, known } => match parse_decisions(&answer.json, known.len()) {
            Ok(decisions) => Outcome::Facts {
                through_seq,
                sources,
                decisions: decisions_json(&decisions, &known),
                call: Some(call(Usage::from_answer(&answer.json))),
            },
            Err(e) => Outcome::Failed(e, Some(call(Usage::from_answer(&answer.json)))),
        },
    }
}

/// A stopping worker's calls in flight: their jobs are queued again (not counted as an attempt)
/// and their usage rows say the outcome is unknown.
fn release(jobs: &[i64], calls: &[i64]) {
    Spi::connect_mut(|c| {
        c.update(
            "SELECT memory._requeue_jobs($1, 'interrupted: the worker stopped during this job (not counted as an attempt)')",
            None,
            &[jobs.to_vec().into()],
        )
        .expect("queueing the interrupted jobs again");
        c.update(
            "UPDATE memory.llm_calls SET status = 'unknown', error = $2 WHERE id = ANY ($1) AND status = 'pending'",
            None,
            &[calls.to_vec().into(), UNKNOWN_OUTCOME.into()],
        )
        .expect("marking the interrupted calls");
    })
}

const UNKNOWN_OUTCOME: &str =
    "the worker stopped while this call was in flight: the provider may have answered (and billed) it";

/// Paces a periodic task of the worker: due every `interval`, and at once after a pass that
/// found more than it could take (`more_due`).
struct Pacer {
    last: Option<Instant>,
    more_due: bool,
}

impl Pacer {
    const fn new() -> Self {
        Pacer { last: None, more_due: false }
    }

    fn due(&mut self, interval: Duration) -> bool {
        if !self.more_due && self.last.is_some_and(|t| t.elapsed() < interval) {
            return false;
        }
        self.last = Some(Instant::now());
        self.more_due = false;
        true
    }
}

/// Asks for the next retention job every memory.retention_interval seconds (the job is queued
/// only while memory.retention_days or an agent's retention_days is set), and at once after a
/// batch that found more than it could take.
fn enqueue_retention(pace: &mut Pacer) {
    if !pace.due(Duration::from_secs(gucs::RETENTION_INTERVAL.get() as u64)) {
        return;
    }
    let queued = try_transaction(|| {
        Spi::connect_mut(|c| {
            if installed(c) {
                c.update("SELECT memory._enqueue_retention()", None, &[]).expect("queueing the retention job");
            }
        })
    });
    if let Err(e) = queued {
        warning!("memory_ext: queueing the retention job failed: {e}");
    }
}

/// Rolls up the daily figures (memory._roll_up_message_days) every ROLLUP_INTERVAL, and at once
/// after a pass that found more conversations than it could take.
fn roll_up_days(pace: &mut Pacer) {
    if !pace.due(ROLLUP_INTERVAL) {
        return;
    }
    let done = try_transaction(|| {
        Spi::connect_mut(|c| {
            if !has_function(c, "memory._roll_up_message_days(integer)") {
                return 0;
            }
            c.update("SELECT memory._roll_up_message_days($1)", None, &[ROLLUP_BATCH.into()])
                .expect("rolling up the daily figures")
                .first()
                .get_one::<i32>()
                .ok()
                .flatten()
                .unwrap_or(0)
        })
    });
    match done {
        Ok(n) => pace.more_due = n >= ROLLUP_BATCH,
        Err(e) => warning!("memory_ext: rolling up the daily message figures failed: {e}"),
    }
}

/// One retention batch: the conversations past their retention period (their agent's
/// retention_days, else memory.retention_days), at most memory.retention_batch of them, deleted in
/// this transaction (a worker stopped halfway deletes nothing, and its job is queued again when it
/// restarts). Returns whether more may be due.
fn run_retention() -> (Outcome, bool) {
    let (days, batch) = (gucs::RETENTION_DAYS.get(), gucs::RETENTION_BATCH.get());
    let (conversations, messages) = Spi::connect_mut(|c| {
        let row = c
            .update("SELECT * FROM memory._retention_batch($1, $2)", None, &[days.into(), batch.into()])
            .expect("deleting a retention batch")
            .first();
        (row.get::<i64>(1).ok().flatten().unwrap_or(0), row.get::<i64>(2).ok().flatten().unwrap_or(0))
    });
    log!(
        "memory_ext retention: deleted {conversations} conversations ({messages} messages) past their retention period (memory.retention_days = {days}, or their agent's)"
    );
    (Outcome::NothingToDo("retention batch done"), conversations >= i64::from(batch))
}

/// Why a worker transaction failed.
struct TxError {
    message: String,
    /// It waited `LOCK_TIMEOUT` for a row lock another transaction holds (a user's open
    /// transaction, say): not the job's failure, to be tried again shortly.
    locked: bool,
}

impl std::fmt::Display for TxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs `body` in a transaction of its own; an error inside aborts that transaction and comes
/// back as its message instead of ending the worker.
fn try_transaction<R>(body: impl FnOnce() -> R + UnwindSafe + RefUnwindSafe) -> Result<R, TxError> {
    // SAFETY: the worker's main loop holds no transaction between jobs.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let result = PgTryBuilder::new(|| Ok(body()))
        .catch_others(|e| {
            Err(match e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => TxError {
                    message: r.message().to_owned(),
                    locked: r.sql_error_code() == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                },
                CaughtError::RustPanic { ereport, .. } => {
                    TxError { message: ereport.message().to_owned(), locked: false }
                }
            })
        })
        .execute();
    unsafe {
        if result.is_ok() {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        } else {
            pg_sys::AbortCurrentTransaction();
        }
    }
    result
}

/// When the postmaster dies its children are re-parented.
fn postmaster_alive() -> bool {
    // SAFETY: PostmasterPid is set once at startup.
    std::os::unix::process::parent_id() as i32 == unsafe { pg_sys::PostmasterPid }
}

/// Whether the database has this version's SQL: the worker serves it only then (after CREATE
/// EXTENSION, or ALTER EXTENSION UPDATE when the library was upgraded first).
fn installed(c: &SpiClient) -> bool {
    has_function(c, "memory._claim_job(uuid[])")
}

/// Whether the database has this function (a signature as to_regprocedure reads it).
fn has_function(c: &SpiClient, signature: &str) -> bool {
    c.select("SELECT to_regprocedure($1) IS NOT NULL", None, &[signature.into()])
        .ok()
        .and_then(|t| t.first().get_one::<bool>().ok().flatten())
        .unwrap_or(false)
}

/// Jobs left `running` belonged to a worker that died: queue them again without spending an
/// attempt (a job interrupted `memory.max_attempts` times is failed: it may be what kills the
/// worker). Calls left `pending` may have been answered and billed: their outcome is `unknown`.
fn recover_interrupted_jobs() {
    Spi::connect_mut(|c| {
        if !installed(c) {
            return;
        }
        c.update("SELECT memory._recover_jobs()", None, &[]).expect("recovering interrupted jobs");
        c.update(
            "UPDATE memory.llm_calls SET status = 'unknown', error = $1 WHERE status = 'pending'",
            None,
            &[UNKNOWN_OUTCOME.into()],
        )
        .expect("recovering interrupted calls");
    })
}

/// Marks the next due job `running`, taking it from the waiting user whose jobs were served
/// longest ago (fair between users; one index probe per waiting user, whatever the queue's
/// length), except users in `saturated` (their jobs hold their share of the calls in flight). A
/// job whose conversation cannot be read is ended here, never left `running`.
fn claim_job(saturated: &[Uuid]) -> Option<Claimed> {
    Spi::connect_mut(|c| {
        if !installed(c) {
            return None;
        }
        let claimed = c
            .update(
                "SELECT id, conversation_id, attempts, encoding, total_tokens, user_id, kind FROM memory._claim_job($1)",
                None,
                &[saturated.to_vec().into()],
            )
            .expect("claiming a job");
        if claimed.is_empty() {
            return None;
        }
        let row = claimed.first();
        let id: i64 = row.get(1).ok().flatten()?;
        let kind = row.get::<String>(7).ok().flatten().unwrap_or_default();
        let loaded = if kind == "retention" {
            // the server's own job: no conversation
            Some(Claimed {
                id,
                kind,
                conversation_id: Uuid::from_bytes([0; 16]),
                attempts: row.get(3).ok().flatten().unwrap_or(0),
                encoding: Encoding::resolve("cl100k_base").ok()?,
                total_tokens: 0,
                user_id: Uuid::from_bytes([0; 16]),
                trace: SpanIds::root(),
                claimed_at: SystemTime::now(),
            })
        } else {
            (|| {
                Some(Claimed {
                    id,
                    kind,
                    conversation_id: row.get(2).ok()??,
                    attempts: row.get(3).ok()??,
                    encoding: Encoding::resolve(&row.get::<String>(4).ok()??).ok()?,
                    total_tokens: row.get(5).ok()??,
                    user_id: row.get::<Uuid>(6).ok()??,
                    trace: SpanIds::root(),
                    claimed_at: SystemTime::now(),
                })
            })()
        };
        let Some(claimed) = loaded else {
            c.update(
                "SELECT memory._finish_job($1, 'failed', 'the conversation of this job could not be read')",
                None,
                &[id.into()],
            )
            .expect("ending an unreadable job");
            return None;
        };
        Some(claimed)
    })
}

/// The previous summary and the first batch of messages after it, bounded by
/// `memory.summary_batch_tokens`: a long backlog is summarized in several progressive steps.
fn load_job(claimed: &Claimed) -> Job {
    Spi::connect(|c| {
        let conversation_id = claimed.conversation_id;
        let prev = c.select(NEWEST_SUMMARY, None, &[conversation_id.into()]).expect("reading the previous summary");
        let (previous, covered, covered_tokens) = if prev.is_empty() {
            (None, 0, 0)
        } else {
            let p = prev.first();
            (
                p.get::<String>(1).ok().flatten(),
                p.get::<i64>(3).ok().flatten().unwrap_or(0),
                p.get::<i64>(4).ok().flatten().unwrap_or(0),
            )
        };

        let limit = i64::from(gucs::SUMMARY_BATCH_TOKENS.get());
        let (mut rows, mut batch_tokens, mut after) = (Vec::<Row>::new(), 0i64, covered);
        'batches: loop {
            let page = c
                .select(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM memory.conversation_messages
                          WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT 256"
                    ),
                    None,
                    &[conversation_id.into(), after.into()],
                )
                .expect("reading the messages to summarize");
            if page.is_empty() {
                break;
            }
            for m in page {
                after = m.get::<i64>(1).ok().flatten().unwrap_or(after + 1);
                batch_tokens += m.get::<i32>(2).ok().flatten().map(i64::from).unwrap_or(0);
                // A stored message that no longer validates is left out of the summary, not fatal.
                if let Ok(row) = message_row(&m).expect("decoding a stored message") {
                    rows.push(row);
                }
                if batch_tokens >= limit {
                    break 'batches;
                }
            }
        }
        let tail_tokens = (claimed.total_tokens - covered_tokens - batch_tokens).max(0);
        let calls: Vec<String> = rows.iter().flat_map(|r| r.msg.calls.iter().cloned()).collect();
        let answered_later: HashSet<String> = if tail_tokens > 0 && !calls.is_empty() {
            c.select(
                "SELECT tool_call_id FROM memory.conversation_messages
                  WHERE conversation_id = $1 AND seq > $2 AND tool_call_id = ANY ($3)",
                None,
                &[conversation_id.into(), after.into(), calls.into()],
            )
            .expect("reading the results of the batch's calls")
            .filter_map(|r| r.get::<String>(1).ok().flatten())
            .collect()
        } else {
            HashSet::new()
        };
        Job { encoding: claimed.encoding, previous, rows, tail_tokens, answered_later }
    })
}

/// A reply job's call: the agent's window as it stands now, with its usage row `pending`.
/// Nothing to do when the newest message is already a plain assistant answer.
fn prepare_reply(job: &Claimed) -> Prepared {
    Spi::connect_mut(|c| {
        let Some(conv) = load_conversation(c, job.conversation_id) else {
            return Prepared::Finished(Outcome::NothingToDo("the conversation is gone"));
        };
        // a job a member caused is answered without the agent's private parts (unless shared)
        let conv = conv.for_caller(job.user_id);
        let newest = c
            .select(
                "SELECT role = 'assistant' AND tool_calls IS NULL FROM memory.conversation_messages
                  WHERE conversation_id = $1 ORDER BY seq DESC LIMIT 1",
                None,
                &[job.conversation_id.into()],
            )
            .expect("reading the newest message");
        if newest.first().get_one::<bool>().ok().flatten().unwrap_or(true) {
            return Prepared::Finished(Outcome::NothingToDo(
                "nothing to answer: no message, or the newest is already an answer",
            ));
        }
        // over the owner's daily token limit: an error, recorded in the job and retried later
        c.update("SELECT memory._check_token_quota_of($1)", None, &[job.user_id.into()])
            .expect("checking the daily token limit");
        // the window's page queries walk the index, as in build_context (see sql/context.sql)
        c.update(
            "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off",
            None,
            &[],
        )
        .expect("pinning the window's plans");
        let request = TurnRequest::new(c, &conv, Some(job.user_id));
        let call_id = begin_call(c, job, &conv.settings.model, conv.agent, Some(request.local_prompt_tokens()));
        let mut attributes = vec![
            ("memory.window.tokens", Attr::Int(request.local_prompt_tokens())),
            ("memory.summary.used", Attr::Bool(request.window.summary_included)),
        ];
        if let Some(agent) = conv.agent {
            attributes.push(("memory.agent.id", Attr::Str(agent.to_string())));
        }
        Prepared::Call { work: Work::Reply { last_seq: conv.last_seq }, body: request.body, call_id, attributes }
    })
}

/// An embed job's call: the conversation's next messages without a vector of
/// `memory.embedding_model` (at most `memory.embedding_batch`, oldest first), with its usage row
/// `pending`. Nothing to do when embeddings are off or every message has its vector.
fn prepare_embed(job: &Claimed) -> Prepared {
    let Some(model) = gucs::string(&gucs::EMBEDDING_MODEL) else {
        return Prepared::Finished(Outcome::NothingToDo("embeddings are off: memory.embedding_model is not set"));
    };
    Spi::connect_mut(|c| {
        let batch = c
            .select(
                "SELECT id, input FROM memory._embedding_batch($1, $2, $3)",
                None,
                &[job.conversation_id.into(), model.as_str().into(), gucs::EMBEDDING_BATCH.get().into()],
            )
            .expect("reading the messages to embed");
        let (mut ids, mut inputs) = (Vec::new(), Vec::new());
        for row in batch {
            if let (Ok(Some(id)), Ok(Some(text))) = (row.get::<Uuid>(1), row.get::<String>(2)) {
                ids.push(id);
                inputs.push(embedding::input_of(&text));
            }
        }
        if ids.is_empty() {
            return Prepared::Finished(Outcome::NothingToDo("nothing to embed: every message has its vector"));
        }
        // over its user's daily token limit: an error, recorded in the job and retried later
        c.update("SELECT memory._check_token_quota_of($1)", None, &[job.user_id.into()])
            .expect("checking the daily token limit");
        let call_id = begin_call(c, job, &model, None, None);
        let body = embedding::request_body(&model, &inputs, gucs::EMBEDDING_DIMENSIONS.get());
        let attributes = vec![("memory.embed.messages", Attr::Int(ids.len() as i64))];
        Prepared::Call { work: Work::Embed { ids, inputs, model }, body, call_id, attributes }
    })
}

/// An extract job's call: the conversation's finished turns its extract jobs have not read
/// (bounded by `memory.summary_batch_tokens`) and its owner's current facts, with the usage row
/// `pending`. A batch without a message of the owner moves the progress mark without a call.
fn prepare_extract(job: &Claimed) -> Prepared {
    if !gucs::EXTRACT_FACTS.get() {
        return Prepared::Finished(Outcome::NothingToDo("fact extraction is off: memory.extract_facts is off"));
    }
    if gucs::string(&gucs::LLM_API_KEY).is_none() {
        return Prepared::Finished(Outcome::NothingToDo("fact extraction needs an LLM: memory.llm_api_key is not set"));
    }
    Spi::connect_mut(|c| {
        let batch: Vec<(Uuid, i64, String, String, bool)> = c
            .select(
                "SELECT id, seq, role, content, from_owner FROM memory._fact_batch($1, $2)",
                None,
                &[job.conversation_id.into(), gucs::SUMMARY_BATCH_TOKENS.get().into()],
            )
            .expect("reading the messages to extract facts from")
            .filter_map(|r| {
                Some((
                    r.get::<Uuid>(1).ok()??,
                    r.get::<i64>(2).ok()??,
                    r.get::<String>(3).ok()??,
                    r.get::<String>(4).ok()??,
                    r.get::<bool>(5).ok()??,
                ))
            })
            .collect();
        let Some(through_seq) = batch.last().map(|m| m.1) else {
            return Prepared::Finished(Outcome::NothingToDo("nothing to extract: every finished turn was read"));
        };
        let sources: Vec<Uuid> = batch.iter().filter(|m| m.4).map(|m| m.0).collect();
        if sources.is_empty() {
            // nothing the owner said: only the mark moves
            return Prepared::Finished(Outcome::Facts {
                through_seq,
                sources,
                decisions: Value::Array(vec![]),
                call: None,
            });
        }
        let (known, texts): (Vec<String>, Vec<String>) = c
            .select(
                "SELECT id::text, content FROM memory._known_facts($1, $2)",
                None,
                &[job.conversation_id.into(), facts::KNOWN_FACTS.into()],
            )
            .expect("reading the known facts")
            .filter_map(|r| Some((r.get::<String>(1).ok()??, r.get::<String>(2).ok()??)))
            .unzip();
        let said: Vec<Said> = batch.iter().map(|m| Said { role: &m.2, content: &m.3, from_owner: m.4 }).collect();
        // over its user's daily token limit: an error, recorded in the job and retried later
        c.update("SELECT memory._check_token_quota_of($1)", None, &[job.user_id.into()])
            .expect("checking the daily token limit");
        let model = gucs::string(&gucs::LLM_MODEL).unwrap_or_default();
        let call_id = begin_call(c, job, &model, None, None);
        let body = facts::request_body(&model, &texts, &said);
        let attributes = vec![
            ("memory.extract.messages", Attr::Int(batch.len() as i64)),
            ("memory.extract.known_facts", Attr::Int(known.len() as i64)),
        ];
        Prepared::Call { work: Work::Extract { through_seq, sources, known }, body, call_id, attributes }
    })
}

/// A summary job's call: the next cut of the conversation, with its usage row `pending`. Without
/// an API key the built-in extractive summarizer answers at once.
fn prepare_summary(job: &Claimed) -> Prepared {
    let batch = load_job(job);
    let Some(cut) =
        choose_cut(&batch.rows, i64::from(gucs::SUMMARY_KEEP_TOKENS.get()), batch.tail_tokens, &batch.answered_later)
    else {
        return Prepared::Finished(Outcome::NothingToDo(
            "nothing to summarize: every message is among the newest kept verbatim",
        ));
    };
    let rows: Vec<Row> = batch.rows.iter().filter(|r| r.seq <= cut).cloned().collect();
    let max_tokens = gucs::SUMMARY_MAX_TOKENS.get();
    if gucs::string(&gucs::LLM_API_KEY).is_none() {
        // the built-in summarizer calls no LLM: nothing to charge
        let content = extractive(batch.previous.as_deref(), &rows, batch.encoding, max_tokens);
        return Prepared::Finished(Outcome::Summary {
            covers_through_seq: cut,
            content,
            model: EXTRACTIVE_MODEL.to_owned(),
            call: None,
        });
    }
    let model = gucs::string(&gucs::LLM_MODEL).unwrap_or_default();
    let body = request_body(&model, batch.previous.as_deref(), &rows, max_tokens);
    let call_id = Spi::connect_mut(|c| {
        // over its user's daily token limit: an error, recorded in the job and retried later
        c.update("SELECT memory._check_token_quota_of($1)", None, &[job.user_id.into()])
            .expect("checking the daily token limit");
        begin_call(c, job, &model, None, None)
    });
    // the previous summary is part of the prompt: the new one continues it
    let attributes = vec![
        ("memory.summary.used", Attr::Bool(batch.previous.is_some())),
        ("memory.summary.covers_through_seq", Attr::Int(cut)),
    ];
    Prepared::Call { work: Work::Summary { covers_through_seq: cut, model }, body, call_id, attributes }
}

/// The usage row of a call about to start, `pending` until its answer is in: committed before
/// the call, so that no call the provider may bill goes unrecorded.
fn begin_call(c: &mut SpiClient, job: &Claimed, model: &str, agent: Option<Uuid>, local_prompt: Option<i64>) -> i64 {
    let local_prompt = local_prompt.map(column_count);
    c.update(
        "INSERT INTO memory.llm_calls (conversation_id, user_id, agent_id, job_id, kind, model, local_prompt_tokens, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') RETURNING id",
        None,
        &[
            job.conversation_id.into(),
            job.user_id.into(),
            agent.into(),
            job.id.into(),
            job.kind.clone().into(),
            model.into(),
            local_prompt.into(),
        ],
    )
    .expect("recording the LLM call")
    .first()
    .get_one::<i64>()
    .expect("reading the call's id")
    .expect("the call's id")
}

/// Completes a call's usage row with what the provider reported.
fn record_call(c: &mut SpiClient, call: &Call, status: &str, error: Option<&str>) {
    let [prompt_tokens, completion_tokens, total_tokens] = call.usage.columns();
    c.update(
        "UPDATE memory.llm_calls
            SET prompt_tokens = $2, completion_tokens = $3, total_tokens = $4, latency_ms = $5, status = $6, error = $7
          WHERE id = $1",
        None,
        &[
            call.id.into(),
            prompt_tokens.into(),
            completion_tokens.into(),
            total_tokens.into(),
            call.latency_ms.into(),
            status.into(),
            error.into(),
        ],
    )
    .expect("recording the LLM call");
}

fn finish(job: &Claimed, outcome: &Outcome) {
    Spi::connect_mut(|c| {
        // A job deleted while its LLM call ran (rewind_conversation cancels the pending jobs of the
        // messages it removes) writes nothing: its answer is about messages that are gone. The
        // row lock makes a rewind that is deleting the job wait for this decision, or this wait
        // for the rewind's commit.
        if !job_still_running(c, job) {
            if let Some(call) = call_of(outcome) {
                record_call(c, call, "discarded", Some("the job was cancelled while the LLM answered"));
            }
            return;
        }
        match outcome {
            Outcome::Summary { covers_through_seq, content, model, call } => {
                if let Some(call) = call {
                    record_call(c, call, "ok", None);
                }
                // FOR KEY SHARE: a conversation deleted meanwhile (its job went with it) ends
                // cleanly with nothing written; one being deleted waits for this commit.
                c.update(
                    "WITH conv AS (SELECT id FROM memory.conversations WHERE id = $1 FOR KEY SHARE)
                     INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
                     SELECT id, $2, $3, $4 FROM conv",
                    None,
                    &[
                        job.conversation_id.into(),
                        (*covers_through_seq).into(),
                        content.as_str().into(),
                        model.as_str().into(),
                    ],
                )
                .expect("storing the summary");
                c.update("SELECT memory._finish_job($1, 'done')", None, &[job.id.into()])
                    .expect("finishing the summary job");
            }
            Outcome::Reply { reply, last_seq, call } => finish_reply(c, job, reply, *last_seq, call),
            Outcome::Embeddings { ids, inputs, vectors, model, call } => {
                record_call(c, call, "ok", None);
                // messages removed meanwhile are skipped; a longer backlog gets the next job
                let literals: Vec<String> = vectors.iter().map(|v| vector_literal(v)).collect();
                let args = [
                    job.conversation_id.into(),
                    model.as_str().into(),
                    ids.clone().into(),
                    literals.into(),
                    inputs.clone().into(),
                ];
                store_then_continue(c, job, "SELECT memory._store_embeddings($1, $2, $3, $4, $5)", &args);
            }
            Outcome::Facts { through_seq, sources, decisions, call } => {
                if let Some(call) = call {
                    record_call(c, call, "ok", None);
                }
                // decisions and progress together
                let args = [
                    job.conversation_id.into(),
                    (*through_seq).into(),
                    decisions.to_string().into(),
                    sources.clone().into(),
                ];
                store_then_continue(c, job, "SELECT memory._apply_facts($1, $2, $3::jsonb, $4)", &args);
            }
            Outcome::NothingToDo(why) => {
                c.update("SELECT memory._finish_job($1, 'done', $2)", None, &[job.id.into(), (*why).into()])
                    .expect("finishing the job");
            }
            Outcome::Failed(e, call) => {
                if let Some(call) = call {
                    record_call(c, call, "error", Some(&e.message));
                }
                let attempts = job.attempts + 1;
                let wait = backoff(attempts, Duration::from_millis(gucs::RETRY_BACKOFF.get() as u64), e.retry_after);
                warning!("memory_ext: {} job {} attempt {} failed: {}", job.kind, job.id, attempts, e.message);
                c.update(
                    "SELECT memory._retry_job($1, $2, $3)",
                    None,
                    &[job.id.into(), e.message.as_str().into(), wait.as_secs_f64().into()],
                )
                .expect("recording the failed attempt");
            }
        }
    })
}

/// Stores a batch's result with `store` (a function that returns whether more of the
/// conversation waits), finishes the job, and queues the next one of its kind for the rest.
fn store_then_continue(c: &mut SpiClient, job: &Claimed, store: &str, args: &[pgrx::datum::DatumWithOid]) {
    let more = c
        .update(store, None, args)
        .unwrap_or_else(|e| panic!("storing the {} job's result: {e}", job.kind))
        .first()
        .get_one::<bool>()
        .ok()
        .flatten()
        .unwrap_or(false);
    c.update("SELECT memory._finish_job($1, 'done')", None, &[job.id.into()]).expect("finishing the job");
    if more {
        c.update("SELECT memory._enqueue_job($1, $2)", None, &[job.kind.as_str().into(), job.conversation_id.into()])
            .expect("queueing the next job of its kind");
    }
}

fn job_still_running(c: &mut SpiClient, job: &Claimed) -> bool {
    c.update("SELECT 1 FROM memory.jobs WHERE id = $1 AND status = 'running' FOR UPDATE", None, &[job.id.into()])
        .expect("locking the job")
        .first()
        .get_one::<i32>()
        .ok()
        .flatten()
        .is_some()
}

/// Appends the answer, unless a message arrived after the window was built: then the answer is
/// stale (it would ignore that message), recorded as discarded, and the job is queued again at
/// once without spending an attempt, to answer the conversation as it now stands.
fn finish_reply(c: &mut SpiClient, job: &Claimed, reply: &Reply, last_seq: i64, call: &Call) {
    let now_seq = c
        .update(
            "SELECT last_seq FROM memory.conversations WHERE id = $1 FOR NO KEY UPDATE",
            None,
            &[job.conversation_id.into()],
        )
        .expect("locking the conversation");
    let Some(now_seq) = now_seq.first().get_one::<i64>().ok().flatten() else {
        // deleted meanwhile: its jobs went with it
        record_call(c, call, "discarded", Some("the conversation was deleted while the LLM answered"));
        return;
    };
    if now_seq != last_seq {
        record_call(c, call, "discarded", Some("the conversation changed while the LLM answered"));
        c.update(
            "SELECT memory._requeue_jobs(ARRAY[$1], 'recomputing: a message arrived while the LLM answered')",
            None,
            &[job.id.into()],
        )
        .expect("queueing the reply again");
        return;
    }
    let id = c
        .update(
            "INSERT INTO memory.conversation_messages (conversation_id, role, content, tool_calls, seq, token_count)
             VALUES ($1, 'assistant', $2, $3, 0, 0) RETURNING id",
            None,
            &[
                job.conversation_id.into(),
                reply.content.as_str().into(),
                reply.tool_calls.clone().map(pgrx::JsonB).into(),
            ],
        )
        .expect("storing the reply")
        .first()
        .get_one::<Uuid>()
        .expect("reading the reply's id");
    record_call(c, call, "ok", None);
    c.update(
        "SELECT memory._finish_job($1, 'done', NULL, jsonb_build_object('message_id', $2::uuid))",
        None,
        &[job.id.into(), id.into()],
    )
    .expect("finishing the reply job");
}
