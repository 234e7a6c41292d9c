//! Settings that SQL reads (memory.search_config, memory.notify_messages, memory.extract_facts):
//! pure Rust over the GUCs of src/gucs.rs.

use pgrx::prelude::*;

use crate::gucs;

/// The text search configuration messages are indexed and searched with (memory.search_config);
/// NULL when search is off ('off': messages are stored without search words).
#[pg_extern(stable, parallel_safe)]
pub(crate) fn _search_config() -> Option<String> {
    let config = gucs::SEARCH_CONFIG
        .get()
        .and_then(|c| c.into_string().ok())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "simple".into());
    (config != "off").then_some(config)
}

/// Whether new messages are announced on channel memory_messages.
#[pg_extern(stable, parallel_safe)]
fn _notify_messages() -> bool {
    gucs::NOTIFY_MESSAGES.get()
}

/// Whether finished turns queue an extract job (memory.extract_facts).
#[pg_extern(stable, parallel_safe)]
fn _extract_facts() -> bool {
    gucs::EXTRACT_FACTS.get()
}
