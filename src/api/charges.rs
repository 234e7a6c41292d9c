//! Charges that survive the caller's ROLLBACK. `memory.chat` records its LLM call in the caller's
//! transaction; when that transaction (or the savepoint around the turn) rolls back, the row goes
//! with it although the provider answered and billed the call. PostgreSQL has no autonomous
//! transactions, so the backend keeps each of its transaction's calls in backend memory and, on
//! abort, moves them to a ledger in shared memory (`core::ledger`). The background worker writes
//! each one as a `memory.llm_calls` row of its own (status `rolled_back`), charged to the caller's
//! day; until it has, the daily token limit adds the caller's charges still in the ledger. Needs the
//! library in shared_preload_libraries (shared memory, the worker); without it a rolled-back turn
//! is not charged.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{pg_shmem_init, PgLwLock, Uuid};

use crate::core::ledger::{Charge, Ledger};

/// Room for the charges of rolled-back turns between two passes of the worker (at most about a
/// second apart while it runs).
const CAPACITY: usize = 2048;

#[derive(Default)]
pub struct Shared(Ledger<CAPACITY>);
// SAFETY: plain data (no pointers, no heap), accessed only under the lock.
unsafe impl PGRXSharedMemory for Shared {}

static LEDGER: PgLwLock<Shared> = unsafe { PgLwLock::new(c"memory_ext_rolled_back_charges") };
/// Set in the postmaster when the ledger was requested (inherited by every backend).
static READY: AtomicBool = AtomicBool::new(false);

/// In `_PG_init`, when preloaded.
pub fn init() {
    pg_shmem_init!(LEDGER);
    READY.store(true, Ordering::Relaxed);
}

thread_local! {
    /// This backend's synchronous calls in the current transaction, with the subtransaction each
    /// was made in.
    static THIS_XACT: RefCell<Vec<(pg_sys::SubTransactionId, Charge)>> = const { RefCell::new(Vec::new()) };
    static HOOKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static NEXT_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

/// Remembers a call about to be made in the current transaction: if the transaction or its
/// savepoint rolls back, the charge goes to the ledger. Returns the handle for `amend`/`forget`.
pub fn remember(mut charge: Charge) -> u64 {
    if !READY.load(Ordering::Relaxed) || !in_worker_database() {
        return 0;
    }
    let id = NEXT_ID.get();
    NEXT_ID.set(id + 1);
    charge.seq = id; // a backend-local handle until the ledger numbers it
    charge.minute = unix_minute();
    if !HOOKED.get() {
        // SAFETY: registering this backend's callbacks once; they only touch backend memory and
        // the ledger under its lock.
        unsafe {
            pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
        }
        HOOKED.set(true);
    }
    // SAFETY: reading the current subtransaction's id.
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    THIS_XACT.with_borrow_mut(|calls| calls.push((sub, charge)));
    id
}

/// Completes a remembered call with what the provider reported.
pub fn amend(id: u64, f: impl FnOnce(&mut Charge)) {
    THIS_XACT.with_borrow_mut(|calls| {
        if let Some((_, c)) = calls.iter_mut().find(|(_, c)| c.seq == id) {
            f(c);
        }
    });
}

/// Drops a remembered call that never reached the model (refused connection, an HTTP error):
/// nothing was billed.
pub fn forget(id: u64) {
    THIS_XACT.with_borrow_mut(|calls| calls.retain(|(_, c)| c.seq != id));
}

/// Whether this backend's database is the one the worker serves (and writes the ledger into).
fn in_worker_database() -> bool {
    thread_local!(static ANSWER: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) });
    if let Some(known) = ANSWER.get() {
        return known;
    }
    let worker_db = crate::gucs::string(&crate::gucs::WORKER_DATABASE).unwrap_or_else(|| "postgres".into());
    // SAFETY: the name of this backend's own database, palloc'd in the current context.
    let here = unsafe {
        let name = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        (!name.is_null()).then(|| std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned())
    };
    let answer = crate::gucs::WORKER_ENABLED.get() && here.as_deref() == Some(worker_db.as_str());
    ANSWER.set(Some(answer));
    answer
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            // the usage rows committed with the turns
            THIS_XACT.with_borrow_mut(Vec::clear);
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT => move_to_ledger(|_| true),
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        // calls made in this subtransaction or in one nested in it (their ids are not smaller)
        move_to_ledger(|made_in| made_in >= sub);
    }
}

/// Moves the calls that `rolled_back` selects to the ledger. Runs during abort: nothing here may
/// fail (a full ledger drops the charge and counts it for the worker to report).
fn move_to_ledger(rolled_back: impl Fn(pg_sys::SubTransactionId) -> bool) {
    let gone: Vec<Charge> = THIS_XACT.with_borrow_mut(|calls| {
        let (gone, kept): (Vec<_>, Vec<_>) = calls.drain(..).partition(|(sub, _)| rolled_back(*sub));
        *calls = kept;
        gone.into_iter().map(|(_, c)| c).collect()
    });
    if gone.is_empty() {
        return;
    }
    let mut ledger = LEDGER.exclusive();
    for charge in gone {
        ledger.0.push(charge);
    }
}

/// The current minute since the Unix epoch, by the clock `clock_timestamp()` reads.
fn unix_minute() -> i64 {
    /// Seconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
    const PG_EPOCH_UNIX_SECONDS: i64 = 946_684_800;
    // SAFETY: reads the system clock.
    let micros = unsafe { pg_sys::GetCurrentTimestamp() };
    (micros.div_euclid(1_000_000) + PG_EPOCH_UNIX_SECONDS).div_euclid(60)
}

/// How many of `user_id`'s rolled-back calls of the current minute the worker has not written
/// yet: the per-minute message limit counts each as one message (the turn's, undone).
#[pg_extern(volatile, parallel_safe)]
fn _pending_rolled_back_turns(user_id: Uuid) -> i32 {
    if !READY.load(Ordering::Relaxed) {
        return 0;
    }
    LEDGER.share().0.pending_turns(user_id.as_bytes(), unix_minute())
}

/// Tokens of `user_id`'s rolled-back calls that the worker has not written yet.
#[pg_extern(stable, parallel_safe)]
fn _pending_llm_tokens(user_id: Uuid) -> i64 {
    if !READY.load(Ordering::Relaxed) {
        return 0;
    }
    LEDGER.share().0.pending_tokens(user_id.as_bytes())
}

/// `user_id`'s rolled-back calls that the worker has not written yet, as the tokens they are
/// billed for (`Charge::billed_tokens`), so that SQL prices them (the daily cost limit).
#[pg_extern(stable, parallel_safe)]
fn _pending_llm_charges(
    user_id: Uuid,
) -> TableIterator<'static, (name!(model, String), name!(input_tokens, i64), name!(output_tokens, i64))> {
    let charges =
        if READY.load(Ordering::Relaxed) { LEDGER.share().0.pending_of(user_id.as_bytes()) } else { Vec::new() };
    TableIterator::new(charges.into_iter().map(|c| {
        let (input, output) = c.billed_tokens();
        (c.model().to_string(), input, output)
    }))
}

/// For the worker: the charges to write, and how many were dropped since the last pass.
pub fn pending() -> (Vec<Charge>, u64) {
    if !READY.load(Ordering::Relaxed) {
        return (Vec::new(), 0);
    }
    {
        let shared = LEDGER.share();
        if shared.0.pending().is_empty() {
            return (Vec::new(), 0);
        }
    }
    let mut ledger = LEDGER.exclusive();
    (ledger.0.pending().to_vec(), ledger.0.take_dropped())
}

/// For the worker, once its rows are committed.
pub fn forget_through(seq: u64) {
    LEDGER.exclusive().0.forget_through(seq);
}
