//! SQL-level tests run inside a real server by `cargo pgrx test`.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn as_user(id: &str) {
        Spi::run(&format!("SET memory.user_id = '{id}'")).unwrap();
    }

    /// A conversation without an agent is windowed like one with a default agent: the library's
    /// constants are the agents table's column defaults (the one place they are set).
    #[pg_test]
    fn agentless_defaults_are_the_agents_column_defaults() {
        use crate::core::turn::{DEFAULT_MAX_CONTEXT_TOKENS, DEFAULT_REPLY_MAX_TOKENS, DEFAULT_TEMPERATURE};
        let default = |column: &str| {
            Spi::get_one::<String>(&format!(
                "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a
                   ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                  WHERE d.adrelid = 'memory.agents'::regclass AND a.attname = '{column}'"
            ))
            .unwrap()
            .unwrap()
        };
        assert_eq!(default("max_context_tokens"), DEFAULT_MAX_CONTEXT_TOKENS.to_string());
        assert_eq!(default("reply_max_tokens"), DEFAULT_REPLY_MAX_TOKENS.to_string());
        assert_eq!(default("temperature").parse::<f64>().unwrap(), DEFAULT_TEMPERATURE);
        // and create_agent leaves them to the table
        as_user("00000000-0000-0000-0000-0000000000d1");
        let row = Spi::get_one::<pgrx::JsonB>("SELECT to_jsonb(a) FROM memory.create_agent('defaults') a")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(row["max_context_tokens"], DEFAULT_MAX_CONTEXT_TOKENS);
        assert_eq!(row["reply_max_tokens"], DEFAULT_REPLY_MAX_TOKENS);
        assert_eq!(row["tools"], serde_json::json!([]));
        assert_eq!(row["auto_reply"], false);
    }

    #[pg_test]
    fn estimate_tokens_counts_exactly() {
        assert_eq!(Spi::get_one::<i32>("SELECT memory.estimate_tokens('hello world')").unwrap(), Some(2));
        assert_eq!(Spi::get_one::<i32>("SELECT memory.estimate_tokens('hello world', 'gpt-4o')").unwrap(), Some(2));
        assert_eq!(
            Spi::get_one::<String>("SELECT memory.detokenize(memory.tokenize('héllo 世界'))").unwrap().as_deref(),
            Some("héllo 世界")
        );
    }

    #[pg_test(
        error = "unknown encoding \"nope\"; accepted: cl100k_base, o200k_base, chars4, or a model name (gpt-4o, gpt-4o-mini, gpt-4.1, gpt-4.5, gpt-5, o1, o3, o4-mini, gpt-4, gpt-4-turbo, gpt-3.5-turbo, text-embedding-3-small/large, text-embedding-ada-002, llama-3*)"
    )]
    fn unknown_encoding_is_an_error() {
        Spi::get_one::<i32>("SELECT memory.estimate_tokens('x', 'nope')").unwrap();
    }

    #[pg_test]
    fn insert_trigger_sets_seq_tokens_and_totals() {
        as_user("00000000-0000-0000-0000-0000000000aa");
        let cid =
            Spi::get_one::<pgrx::Uuid>("SELECT (memory.create_conversation(gen_random_uuid())).id").unwrap().unwrap();
        Spi::run(&format!("INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES ('{cid}', 'user', 'hello world')")).unwrap();
        Spi::run(&format!("SELECT memory.add_message('{cid}', 'assistant', 'hi there')")).unwrap();
        let seqs = Spi::get_one::<String>(&format!(
            "SELECT string_agg(seq || ':' || token_count, ',' ORDER BY seq) FROM memory.conversation_messages WHERE conversation_id = '{cid}'"
        ))
        .unwrap();
        // 3 framing + "user" + 2 content; 3 framing + "assistant" + 2 content
        assert_eq!(seqs.as_deref(), Some("1:6,2:6"));
        let totals = Spi::get_two::<i64, i32>(&format!(
            "SELECT total_tokens, message_count FROM memory.conversations WHERE id = '{cid}'"
        ))
        .unwrap();
        assert_eq!(totals, (Some(12), Some(2)));
    }

    #[pg_test]
    fn build_context_agrees_with_build_context_from() {
        as_user("00000000-0000-0000-0000-0000000000bb");
        let cid =
            Spi::get_one::<pgrx::Uuid>("SELECT (memory.create_conversation(gen_random_uuid())).id").unwrap().unwrap();
        Spi::run(&format!(
            "SELECT memory.add_message('{cid}', CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, 'message ' || i || repeat(' word', i % 13)) FROM generate_series(1, 60) i"
        ))
        .unwrap();
        for budget in [20, 100, 300, 5000] {
            let same = Spi::get_one::<bool>(&format!(
                "SELECT memory.build_context('{cid}', {budget}, 'sys') = memory.build_context_from(
                    (SELECT jsonb_agg(jsonb_build_object('role', role, 'content', content) ORDER BY seq)
                       FROM memory.conversation_messages WHERE conversation_id = '{cid}'), {budget}, 'sys')"
            ))
            .unwrap();
            assert_eq!(same, Some(true), "budget {budget}");
        }
        let fits = Spi::get_one::<bool>(&format!(
            "SELECT (c->>'token_count')::int <= 300 AND (c->>'token_count')::int = memory.count_message_tokens(c->'messages')
               FROM memory.build_context('{cid}', 300) c"
        ))
        .unwrap();
        assert_eq!(fits, Some(true));
    }

    #[pg_test(error = "conversation 00000000-0000-0000-0000-000000000001 does not exist")]
    fn build_context_on_missing_conversation() {
        as_user("00000000-0000-0000-0000-0000000000cc");
        Spi::get_one::<pgrx::JsonB>("SELECT memory.build_context('00000000-0000-0000-0000-000000000001')").unwrap();
    }
}
