//! `memory.pass_caller()` and the check of `memory.caller` (see `core::signed_caller`): the
//! caller's identity carried from a Citus coordinator to the workers that evaluate the shards'
//! row-level security.

use std::cell::RefCell;
use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, Uuid};

use crate::core::signed_caller::{self, MIN_SECRET_LEN};
use crate::gucs;
use crate::sql_error::{fail, fail_with_hint, spi_failed};

/// The node secret, or an error naming what is missing.
fn node_secret() -> String {
    match gucs::string(&gucs::NODE_SECRET) {
        Some(s) if s.chars().count() >= MIN_SECRET_LEN => s,
        Some(_) => fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("memory.node_secret is shorter than {MIN_SECRET_LEN} characters"),
        ),
        None => fail_with_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "memory.node_secret is not set on this node",
            "Set the same secret of at least 32 characters on every node, in postgresql.conf or with ALTER SYSTEM.",
        ),
    }
}

fn citus_is_here() -> bool {
    Spi::get_one::<bool>("SELECT pg_catalog.to_regprocedure('pg_catalog.citus_backend_gpid()') IS NOT NULL")
        .unwrap_or_else(|e| spi_failed(e))
        .unwrap_or(false)
}

/// The session a signed caller belongs to: Citus's global process id, which a worker's backend
/// serving the coordinator's session reports as the coordinator's; without Citus, the pid.
fn session() -> i64 {
    if citus_is_here() {
        if let Some(gpid) =
            Spi::get_one::<i64>("SELECT pg_catalog.citus_backend_gpid()").unwrap_or_else(|e| spi_failed(e))
        {
            return gpid;
        }
    }
    // SAFETY: the backend's own pid, set at its start.
    i64::from(unsafe { pg_sys::MyProcPid })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn transaction_start() -> i64 {
    // SAFETY: reads the current transaction's start time.
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

thread_local! {
    /// The last verified caller: (token, transaction start, user). Policies ask for the caller
    /// once per statement or per row; the check (two catalog look-ups and a MAC) runs once per
    /// transaction and value.
    static VERIFIED: RefCell<Option<(String, i64, Uuid)>> = const { RefCell::new(None) };
}

/// The user a `memory.caller` value names, or an error (28000) that says why it was refused.
pub(crate) fn verified_caller(token: &str) -> Uuid {
    let xact = transaction_start();
    let cached = VERIFIED.with(|v| v.borrow().as_ref().filter(|(t, x, _)| t == token && *x == xact).map(|c| c.2));
    if let Some(id) = cached {
        return id;
    }
    let secret = node_secret();
    let user = match signed_caller::verify(&secret, token, session(), unix_now()) {
        Ok(user) => user,
        Err(refusal) => fail_with_hint(
            PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
            format!("memory.caller is refused: {}", refusal.reason()),
            "memory.caller is written by memory.pass_caller() for the transaction that calls it; RESET it or call memory.pass_caller().",
        ),
    };
    let id = super::identity::parse_uuid(user, "memory.caller");
    VERIFIED.with(|v| *v.borrow_mut() = Some((token.to_owned(), xact, id)));
    id
}

/// Whether this backend is a connection Citus opened from another node (its
/// `application_name`). On such a connection, with a node secret set, only a signed caller
/// counts: the settings that name a user elsewhere arrive from the other node unchecked.
pub(crate) fn is_citus_internal_connection() -> bool {
    if gucs::string(&gucs::NODE_SECRET).is_none() {
        return false;
    }
    // SAFETY: GetConfigOption returns NULL or the setting's current string, copied at once.
    let p = unsafe { pg_sys::GetConfigOption(c"application_name".as_ptr(), true, false) };
    !p.is_null() && unsafe { CStr::from_ptr(p) }.to_bytes().starts_with(b"citus_internal")
}

/// Signs the caller `memory.current_user_id()` resolves now and sets it as `memory.caller` for
/// the rest of the transaction (`SET LOCAL`, which Citus copies to the workers it connects to
/// in this transaction). Returns the caller, or NULL (and sets nothing) when there is none.
/// Call it first in a transaction that reads distributed tables, e.g. as PostgREST's
/// `db-pre-request`.
#[pg_extern(volatile, parallel_unsafe)]
pub(crate) fn pass_caller() -> Option<Uuid> {
    let secret = node_secret();
    let id = super::identity::current_user_id()?;
    let token = signed_caller::sign(&secret, &id.to_string(), session(), unix_now());
    if citus_is_here() {
        Spi::run("SET LOCAL citus.propagate_set_commands = 'local'").unwrap_or_else(|e| spi_failed(e));
    }
    // the token is hex, digits, dots and dashes: nothing to quote
    Spi::run(&format!("SET LOCAL memory.caller = '{token}'")).unwrap_or_else(|e| spi_failed(e));
    Some(id)
}
