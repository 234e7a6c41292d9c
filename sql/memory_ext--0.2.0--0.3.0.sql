-- memory_ext 0.2.0 -> 0.3.0
--
-- What changed in the schema:
-- * memory.llm_calls: the worker writes a call's row before the call ('pending') and completes
--   it with the provider's figures afterwards; a call in flight when the worker stopped is
--   'unknown' (the provider may have billed it). The day's token counter follows both writes.
-- * the background worker answers several calls at once (memory.worker_concurrency,
--   memory.worker_user_concurrency: settings only, nothing in the schema) and is registered as
--   "memory_ext worker".
-- * memory.continue_chat checks that the caller may write the answer (and that the conversation
--   is not archived) before it calls the LLM.
-- * memory._get_shared_conversation: a share link's expiry is checked against the clock, not the
--   reader's transaction start.
\echo Use "ALTER EXTENSION memory_ext UPDATE TO '0.3.0'" to load this file. \quit

ALTER TABLE memory.llm_calls DROP CONSTRAINT llm_calls_status_check;
ALTER TABLE memory.llm_calls ADD CONSTRAINT llm_calls_status_check
    CHECK (status IN ('ok', 'discarded', 'error', 'pending', 'unknown'));

DROP TRIGGER llm_calls_after_insert ON memory.llm_calls;
DROP FUNCTION memory._llm_call_after_insert();

-- Keeps the day's token counter of the user a call belongs to: a call is charged when its row is
-- written (the prompt as counted locally, while the provider has not reported), and charged the
-- difference when the worker completes the row with the provider's figures.
CREATE FUNCTION memory._llm_call_after_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_today date := (now() AT TIME ZONE 'UTC')::date;
    v_tokens bigint := coalesce(NEW.total_tokens, NEW.local_prompt_tokens, 0);
BEGIN
    IF TG_OP = 'UPDATE' THEN
        v_tokens := v_tokens - coalesce(OLD.total_tokens, OLD.local_prompt_tokens, 0);
        IF v_tokens = 0 THEN
            RETURN NULL;
        END IF;
    END IF;
    INSERT INTO memory.user_usage AS u (user_id, minute_start, minute_messages, day_start, day_tokens)
    VALUES (NEW.user_id, '-infinity', 0, v_today, v_tokens)
    ON CONFLICT (user_id) DO UPDATE
       SET day_tokens = greatest(0, CASE WHEN u.day_start = excluded.day_start THEN u.day_tokens + excluded.day_tokens
                                         ELSE excluded.day_tokens END),
           day_start = excluded.day_start;
    RETURN NULL;
END $$;

CREATE TRIGGER llm_calls_after_write AFTER INSERT OR UPDATE OF total_tokens, local_prompt_tokens ON memory.llm_calls
    FOR EACH ROW EXECUTE FUNCTION memory._llm_call_after_write();

REVOKE EXECUTE ON FUNCTION memory._llm_call_after_write() FROM PUBLIC;

CREATE OR REPLACE FUNCTION memory._get_shared_conversation(token text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_link memory.share_links;
    v_conv memory.conversations;
BEGIN
    SELECT l.* INTO v_link FROM memory.share_links l
     WHERE l.token_hash = sha256(convert_to(left(coalesce($1, ''), 200), 'UTF8'))
       AND l.revoked_at IS NULL AND (l.expires_at IS NULL OR l.expires_at > clock_timestamp());
    IF NOT FOUND THEN
        RAISE EXCEPTION 'share link is not valid' USING ERRCODE = 'no_data_found';
    END IF;
    SELECT c.* INTO v_conv FROM memory.conversations c WHERE c.id = v_link.conversation_id;
    RETURN memory._export_json(v_conv, v_link.up_to_seq);
END $$;

CREATE OR REPLACE FUNCTION memory.continue_chat(conversation_id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._start_turn($1);
    PERFORM memory._require($1, 'write');
    IF (SELECT c.archived_at FROM memory.conversations c WHERE c.id = $1) IS NOT NULL THEN
        RAISE EXCEPTION 'conversation % is archived', $1
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'memory.unarchive_conversation(id) reopens it.';
    END IF;
    RETURN memory._finish_turn(memory._chat_answer($1));
END $$;
