//! Turning the pure modules' errors into Postgres errors with real SQLSTATEs.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::core::error::{clip, Code, MemError};

pub fn raise(e: MemError) -> ! {
    let code = match e.code {
        Code::InvalidParameter => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
    };
    fail(code, e.message)
}

/// memory_ext's own SQLSTATEs (class PT: PostgREST answers them with the HTTP status of their
/// digits). Raised from SQL too (`sql/usage.sql`); all are listed in docs/errors.md.
pub mod custom {
    /// A per-user limit (messages per minute, LLM tokens per day) or the LLM provider's rate limit.
    pub const RATE_LIMITED: &str = "PT429";
    /// The LLM failed or answered something unusable.
    pub const BAD_GATEWAY: &str = "PT502";
    /// The LLM did not answer within memory.llm_timeout.
    pub const GATEWAY_TIMEOUT: &str = "PT504";
    /// The model declined to answer (its `message.refusal`).
    pub const UNPROCESSABLE: &str = "PT422";
}

/// Raises an ERROR with the given SQLSTATE; usable where an expression is expected.
pub fn fail(code: PgSqlErrorCode, message: impl Into<String>) -> ! {
    let message: String = message.into();
    ereport!(ERROR, code, message);
}

pub fn spi_failed(e: pgrx::spi::SpiError) -> ! {
    fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("memory_ext: SPI failed: {e}"))
}

/// Raises an ERROR with a HINT that says what to do about it.
pub fn fail_with_hint(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> ! {
    let message: String = message.into();
    pgrx::pg_sys::panic::ErrorReport::new(code, message, pgrx::function_name!())
        .set_hint(hint)
        .report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, MemError> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(e))
    }
}

/// Arguments that must not be NULL raise 22004 rather than silently returning NULL.
pub fn required<T>(v: Option<T>, name: &str) -> T {
    v.unwrap_or_else(|| fail(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{name} must not be NULL")))
}

/// Lets a long tokenization be cancelled by statement_timeout or pg_cancel_backend.
pub fn interrupt() {
    pgrx::check_for_interrupts!();
}

/// What an error message may quote of a value a caller sent (`core::error::clip`: at most 80
/// characters, then its size): SQL's errors quote through it, like Rust's.
#[pg_extern(immutable, strict, parallel_safe)]
fn _clip(value: &str) -> String {
    clip(value)
}
