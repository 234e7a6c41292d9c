//! Pure logic: no pgrx in here, unit-tested with plain `#[test]`.
pub mod chat;
pub mod embedding;
pub mod error;
pub mod facts;
pub mod ledger;
pub mod llm;
pub mod otlp;
pub mod recall;
pub mod retry;
pub mod signed_caller;
pub mod statement_frames;
pub mod summary;
pub mod threads;
pub mod tokenizer;
pub mod turn;
pub mod window;
