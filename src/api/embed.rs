//! The query side of semantic search: one `/embeddings` call for the searched text, made on a
//! thread of its own while the backend keeps serving cancel and statement_timeout.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use super::llm_thread::{call_waiting, embedding_config};
use super::turn::provider_error;
use crate::core::embedding::{input_of, parse_embeddings, request_body, vector_literal};
use crate::gucs;
use crate::sql_error::interrupt;

/// The embedding model in use (`memory.embedding_model`), NULL when embeddings are off.
#[pg_extern(stable, parallel_safe)]
fn _embedding_model() -> Option<String> {
    gucs::string(&gucs::EMBEDDING_MODEL)
}

/// `memory.embedding_min_similarity`: semantic search and recall leave out what is at or below it.
#[pg_extern(stable, parallel_safe)]
fn _embedding_min_similarity() -> f64 {
    gucs::EMBEDDING_MIN_SIMILARITY.get()
}

/// `{"vector": "[x,y,…]"}` (pgvector's text form) of `query` in `model`, or `{"error": {sqlstate,
/// message, hint}}` when the provider fails: search_messages raises it.
#[pg_extern(volatile, parallel_unsafe)]
fn _embed_query(query: &str, model: &str) -> JsonB {
    let body = request_body(model, &[input_of(query)], gucs::EMBEDDING_DIMENSIONS.get());
    let answer = call_waiting(embedding_config(), body, None, interrupt);
    JsonB(match answer.and_then(|a| parse_embeddings(&a.json, 1)) {
        Ok(vectors) => json!({"vector": vector_literal(&vectors[0])}),
        Err(e) => json!({"error": provider_error("search_messages", e)}),
    })
}
