//! Errors of the pure logic, each tagged with the SQLSTATE class the SQL layer reports.

use std::fmt;

/// The SQLSTATEs the pure modules can ask for; the pgrx glue maps them to `PgSqlErrorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 22023 invalid_parameter_value
    InvalidParameter,
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
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MemError {}

pub type Result<T> = std::result::Result<T, MemError>;

/// What an error message may quote of user input: at most 80 characters, so that a hostile
/// megabyte-long value never ends up in the server log.
pub fn clip(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes)", &s[..end], s.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clip_bounds_quoted_input() {
        assert_eq!(clip("short"), "short");
        let long = "x".repeat(1_000_000);
        let c = clip(&long);
        assert!(c.len() < 120, "{c}");
        assert!(c.ends_with("(1000000 bytes)"));
        // never cuts inside a character
        assert!(clip(&"é".repeat(100)).starts_with(&"é".repeat(80)));
    }
}
