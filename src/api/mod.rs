//! Thin `#[pg_extern]` wrappers over `crate::core`.
pub mod context;
pub mod identity;
pub mod tests;
pub mod tokens;
