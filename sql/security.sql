-- Row-level security and privileges. Every policy applies the one authorization rule of
-- access.sql; messages and summaries follow their conversation.

ALTER TABLE memory.conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.conversation_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.conversation_summaries ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.queue_turns ENABLE ROW LEVEL SECURITY;

CREATE POLICY conversations_owner ON memory.conversations
    USING (memory._can_read_row(id, user_id, (SELECT memory.current_user_id())))
    WITH CHECK (memory._can_write_row(id, user_id, (SELECT memory.current_user_id())));

CREATE POLICY messages_owner ON memory.conversation_messages
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()))))
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                         WHERE c.id = conversation_id AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()))));

CREATE POLICY summaries_owner ON memory.conversation_summaries
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()))))
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                         WHERE c.id = conversation_id AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()))));

-- jobs and queue_turns have no policy: ordinary roles reach them only through memory's
-- functions.

GRANT USAGE ON SCHEMA memory TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON memory.conversations, memory.conversation_messages TO PUBLIC;
-- Summaries: the id is never chosen by a user (an OVERRIDING SYSTEM VALUE insert would take
-- ids from everyone else), the counts are computed by the trigger, and a stored summary is
-- immutable (delete it and write a new one).
GRANT SELECT, DELETE ON memory.conversation_summaries TO PUBLIC;
GRANT INSERT (conversation_id, covers_through_seq, content, model) ON memory.conversation_summaries TO PUBLIC;
REVOKE ALL ON memory.jobs, memory.queue_turns FROM PUBLIC;

-- Trigger functions and internal helpers are not for callers: without EXECUTE nobody can call
-- them or attach them to a table of their own (triggers fire without that privilege).
REVOKE EXECUTE ON FUNCTION
    memory._conversation_before_insert(), memory._conversation_before_update(),
    memory._message_before_insert(), memory._message_before_insert_write(), memory._message_before_update(),
    memory._messages_after_delete(),
    memory._summary_before_insert(),
    memory._tool_key_taken(text[]), memory._enqueue_job(text, uuid), memory._jobs_count_queued()
FROM PUBLIC;
