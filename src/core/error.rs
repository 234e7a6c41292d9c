//! Errors of the pure logic, each tagged with the SQLSTATE class the SQL layer reports.

use std::fmt;

/// The SQLSTATEs the pure modules can ask for; the pgrx glue maps them to `PgSqlErrorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 22023 invalid_parameter_value
    InvalidParameter,
    /// 54000 program_limit_exceeded
    LimitExceeded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemError {
    pub code: Code,
    pub message: String,
}

impl MemError {
    pub fn invalid(message: impl Into<String>) -> Self {
        MemError { code: Code::InvalidParameter, message: message.into() }
    }
    pub fn limit(message: impl Into<String>) -> Self {
        MemError { code: Code::LimitExceeded, message: message.into() }
    }
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MemError {}

pub type Result<T> = std::result::Result<T, MemError>;
