-- Row-level security and privileges (SPEC §3). Policies call current_user_id() once per
-- query, as an InitPlan, through (SELECT …).

ALTER TABLE memory.conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.conversation_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.conversation_summaries ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.summary_jobs ENABLE ROW LEVEL SECURITY;

CREATE POLICY conversations_owner ON memory.conversations
    USING (user_id = (SELECT memory.current_user_id()))
    WITH CHECK (user_id = (SELECT memory.current_user_id()));

CREATE POLICY messages_owner ON memory.conversation_messages
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id AND c.user_id = (SELECT memory.current_user_id())))
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                         WHERE c.id = conversation_id AND c.user_id = (SELECT memory.current_user_id())));

CREATE POLICY summaries_owner ON memory.conversation_summaries
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id AND c.user_id = (SELECT memory.current_user_id())))
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                         WHERE c.id = conversation_id AND c.user_id = (SELECT memory.current_user_id())));

-- summary_jobs has no policy: ordinary roles reach it only through memory's functions.

GRANT USAGE ON SCHEMA memory TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON memory.conversations, memory.conversation_messages,
    memory.conversation_summaries TO PUBLIC;
REVOKE ALL ON memory.summary_jobs FROM PUBLIC;
