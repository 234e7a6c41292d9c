//! Thin `#[pg_extern]` wrappers over `crate::core`.
pub mod append;
pub mod append_counts;
pub mod caller;
pub mod charges;
pub mod context;
pub mod embed;
pub mod identity;
pub mod limits;
pub mod llm_thread;
pub mod roles;
pub mod settings;
pub mod stored;
pub mod tests;
pub mod tokens;
pub mod traces;
pub mod turn;
