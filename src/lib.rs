//! memory_ext: conversation memory for AI agents inside PostgreSQL.
//!
//! `core` holds the pure logic (tokenizers, chat framing, the window algorithm); `api` holds the
//! thin SQL wrappers; the tables, triggers, policies and SQL-language functions live in `sql/`.

use pgrx::prelude::*;

pub mod api;
pub mod core;
pub mod gucs;
pub mod sql_error;
pub mod worker;

::pgrx::pg_module_magic!(name, version);

// The SQL of the install script, in this order (sql/*.sql; CONTRIBUTING.md says what goes where).
// Schema files (tables, policies) change only through the release's delta; the rest are functions,
// views and triggers that every upgrade replays.
extension_sql_file!("../sql/tool_keys.sql", name = "tool_keys");
extension_sql_file!(
    "../sql/tables.sql",
    name = "tables",
    requires = ["tool_keys", api::identity::current_user_id, api::tokens::default_encoding]
);
extension_sql_file!(
    "../sql/access.sql",
    name = "access",
    requires = ["tables", api::roles::_caller_bypasses_rls, api::caller::pass_caller]
);
extension_sql_file!("../sql/policies.sql", name = "policies", requires = ["access"]);
extension_sql_file!(
    "../sql/summaries.sql",
    name = "summaries",
    requires = [
        "policies",
        api::tokens::summary_tokens,
        api::limits::_check_message_limits,
        api::limits::_summarize_threshold
    ]
);
extension_sql_file!("../sql/queue.sql", name = "queue", requires = ["summaries"]);
extension_sql_file!("../sql/prices.sql", name = "prices", requires = ["queue", api::charges::_pending_llm_charges]);
extension_sql_file!(
    "../sql/usage.sql",
    name = "usage",
    requires = [
        "prices",
        api::limits::_max_messages_per_minute,
        api::limits::_max_llm_tokens_per_day,
        api::limits::_max_llm_cost_per_day,
        api::turn::_in_chat_turn,
        api::charges::_pending_llm_tokens,
        api::charges::_pending_rolled_back_turns
    ]
);
extension_sql_file!(
    "../sql/triggers.sql",
    name = "triggers",
    requires = [
        "usage",
        api::tokens::message_tokens,
        api::tokens::resolve_encoding,
        api::roles::_current_role_is_superuser,
        api::settings::_search_config,
        api::limits::_message_limit_applies,
        api::settings::_notify_messages,
        api::settings::_extract_facts,
        api::turn::_auto_reply_suppressed
    ]
);
extension_sql_file!("../sql/conversations.sql", name = "conversations", requires = ["triggers"]);
extension_sql_file!(
    "../sql/context.sql",
    name = "context",
    requires = ["conversations", api::context::build_context_recall]
);
extension_sql_file!("../sql/agents.sql", name = "agents", requires = ["context"]);
extension_sql_file!(
    "../sql/turns.sql",
    name = "turns",
    requires = ["agents", api::turn::_suppress_auto_reply, api::turn::_chat_answer]
);
extension_sql_file!("../sql/history.sql", name = "history", requires = ["turns"]);
extension_sql_file!("../sql/branches.sql", name = "branches", requires = ["history"]);
extension_sql_file!("../sql/templates.sql", name = "templates", requires = ["branches"]);
extension_sql_file!(
    "../sql/embeddings.sql",
    name = "embeddings",
    requires =
        ["templates", api::embed::_embed_query, api::embed::_embedding_model, api::embed::_embedding_min_similarity]
);
extension_sql_file!("../sql/facts.sql", name = "facts", requires = ["embeddings"]);
extension_sql_file!("../sql/search.sql", name = "search", requires = ["facts"]);
extension_sql_file!("../sql/sharing.sql", name = "sharing", requires = ["search"]);
extension_sql_file!("../sql/share_links.sql", name = "share_links", requires = ["sharing"]);
extension_sql_file!("../sql/retention.sql", name = "retention", requires = ["share_links"]);
extension_sql_file!("../sql/erasure.sql", name = "erasure", requires = ["retention"]);
extension_sql_file!("../sql/analytics.sql", name = "analytics", requires = ["erasure"]);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: reading a postmaster global during library load.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    gucs::define(preloading);
    if !preloading {
        return;
    }
    if gucs::PRELOAD_TOKENIZERS.get() {
        // Built once in the postmaster; every backend shares the tables copy-on-write.
        for enc in [core::tokenizer::Encoding::Cl100kBase, core::tokenizer::Encoding::O200kBase] {
            enc.preload();
        }
    }
    // the ledger of rolled-back calls' charges (see api/charges.rs)
    api::charges::init();
    if gucs::WORKER_ENABLED.get() {
        worker::register();
    }
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'memory_ext'"]
    }
}
