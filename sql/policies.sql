-- Row-level security and table privileges. Every policy applies the one authorization rule of
-- access.sql; messages and summaries follow their conversation. Schema: changed through deltas.

ALTER TABLE memory.conversations ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.conversation_messages ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.conversation_summaries ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.message_days_rollup ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.message_days_marks ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.message_embeddings ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.jobs ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.queue_turns ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.conversation_members ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.conversation_transfers ENABLE ROW LEVEL SECURITY;

-- conversations: read by owner and members; created, changed and deleted by the owner
CREATE POLICY conversations_read ON memory.conversations FOR SELECT
    USING (memory._can_read_row(id, user_id, (SELECT memory.current_user_id()),
                                (SELECT memory._shared_with((SELECT memory.current_user_id()), false))));

CREATE POLICY conversations_owner ON memory.conversations
    USING (memory._can_manage_row(user_id, (SELECT memory.current_user_id())))
    WITH CHECK (memory._can_manage_row(user_id, (SELECT memory.current_user_id())));

-- messages: read with the conversation, appended (and their metadata changed) by owner and
-- editors, removed by the owner
CREATE POLICY messages_read ON memory.conversation_messages FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));

CREATE POLICY messages_append ON memory.conversation_messages FOR INSERT
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), true)))));

CREATE POLICY messages_update ON memory.conversation_messages FOR UPDATE
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), true)))))
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), true)))));

CREATE POLICY messages_remove ON memory.conversation_messages FOR DELETE
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_manage_row(c.user_id, (SELECT memory.current_user_id()))));

-- summaries: read with the conversation, added by owner and editors, removed by the owner
CREATE POLICY summaries_read ON memory.conversation_summaries FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));

CREATE POLICY summaries_add ON memory.conversation_summaries FOR INSERT
    WITH CHECK (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_write_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), true)))));

CREATE POLICY summaries_remove ON memory.conversation_summaries FOR DELETE
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_manage_row(c.user_id, (SELECT memory.current_user_id()))));

-- the messages' daily figures and how far they have counted: read with the conversation; written
-- only by memory_ext's own functions
CREATE POLICY message_days_rollup_read ON memory.message_days_rollup FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));

CREATE POLICY message_days_marks_read ON memory.message_days_marks FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));

-- members: each member sees its own memberships, the owner all of its conversations'; written
-- only through memory.share_conversation and memory.unshare_conversation
CREATE POLICY members_visible ON memory.conversation_members FOR SELECT
    USING (user_id = (SELECT memory.current_user_id()) OR owner_id = (SELECT memory.current_user_id()));

-- transfer offers: their sender and their recipient see them; written only through
-- memory.transfer_conversation, accept_transfer and decline_transfer
CREATE POLICY transfers_visible ON memory.conversation_transfers FOR SELECT
    USING (from_user_id = (SELECT memory.current_user_id()) OR to_user_id = (SELECT memory.current_user_id()));

-- the messages' embeddings: read with the conversation; written only by the worker
CREATE POLICY message_embeddings_read ON memory.message_embeddings FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));

-- jobs and queue_turns have no policy: ordinary roles reach them only through memory's
-- functions.

GRANT USAGE ON SCHEMA memory TO PUBLIC;

GRANT SELECT, INSERT, UPDATE, DELETE ON memory.conversations, memory.conversation_messages TO PUBLIC;

-- Summaries: the id is never chosen by a user (an OVERRIDING SYSTEM VALUE insert would take
-- ids from everyone else), the counts are computed by the trigger, and a stored summary is
-- immutable (delete it and write a new one).
GRANT SELECT, DELETE ON memory.conversation_summaries TO PUBLIC;

GRANT SELECT ON memory.conversation_members, memory.conversation_transfers, memory.message_days_rollup,
    memory.message_days_marks,
    memory.message_embeddings TO PUBLIC;

GRANT INSERT (conversation_id, covers_through_seq, content, model) ON memory.conversation_summaries TO PUBLIC;

REVOKE ALL ON memory.jobs, memory.queue_turns FROM PUBLIC;

-- Row-level security and privileges ------------------------------------------------------------
ALTER TABLE memory.agents ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.llm_calls ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.user_usage ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.llm_call_days ENABLE ROW LEVEL SECURITY;

CREATE POLICY agents_owner ON memory.agents
    USING (user_id = (SELECT memory.current_user_id()))
    WITH CHECK (user_id = (SELECT memory.current_user_id()));

-- whoever may read a conversation may read the agent that applies to it, when its owner shares
-- its configuration (share_config): otherwise the prompt and tools stay the owner's alone, on every
-- route that reads agents under the caller's RLS (the table, get_agent, build_context, chat turns)
CREATE POLICY agents_of_readable_conversations ON memory.agents FOR SELECT
    USING (share_config AND EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE memory._agent_applies(agents, c.agent_id, c.user_id)
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                               (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));

CREATE POLICY llm_calls_owner ON memory.llm_calls FOR SELECT
    USING (user_id = (SELECT memory.current_user_id()));

GRANT SELECT, INSERT, UPDATE, DELETE ON memory.agents TO PUBLIC;

-- the calls' daily figures: the user's own, like the calls; written only by llm_calls' trigger
CREATE POLICY llm_call_days_owner ON memory.llm_call_days FOR SELECT
    USING (user_id = (SELECT memory.current_user_id()));

GRANT SELECT ON memory.llm_calls, memory.llm_call_days TO PUBLIC;

REVOKE ALL ON memory.user_usage FROM PUBLIC;

-- prices are no one's data: everyone reads them, only the operator (the table's owner, a
-- superuser) writes them
ALTER TABLE memory.model_prices ENABLE ROW LEVEL SECURITY;

CREATE POLICY model_prices_read ON memory.model_prices FOR SELECT USING (true);

GRANT SELECT ON memory.model_prices TO PUBLIC;

ALTER TABLE memory.conversation_templates ENABLE ROW LEVEL SECURITY;

CREATE POLICY templates_owner ON memory.conversation_templates
    USING (user_id = (SELECT memory.current_user_id()))
    WITH CHECK (user_id = (SELECT memory.current_user_id()));

GRANT SELECT, INSERT, UPDATE, DELETE ON memory.conversation_templates TO PUBLIC;

ALTER TABLE memory.share_links ENABLE ROW LEVEL SECURITY;

-- the owner sees its conversations' links (never a token); written only through the functions
CREATE POLICY share_links_owner ON memory.share_links FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_manage_row(c.user_id, (SELECT memory.current_user_id()))));

GRANT SELECT ON memory.share_links TO PUBLIC;

-- facts: a user's own, and no one else's (not even a conversation's members: facts are about a
-- person, not a conversation). Users add, edit and delete them; the agent a fact is for must be
-- their own. The worker writes the extracted ones and the vectors.
ALTER TABLE memory.facts ENABLE ROW LEVEL SECURITY;

ALTER TABLE memory.fact_progress ENABLE ROW LEVEL SECURITY;

CREATE POLICY facts_owner ON memory.facts
    USING (user_id = (SELECT memory.current_user_id()))
    WITH CHECK (user_id = (SELECT memory.current_user_id())
                AND (agent_id IS NULL OR EXISTS (SELECT 1 FROM memory.agents a
                                                  WHERE a.id = agent_id AND a.user_id = (SELECT memory.current_user_id()))));

GRANT SELECT, DELETE ON memory.facts TO PUBLIC;

GRANT INSERT (agent_id, content), UPDATE (content) ON memory.facts TO PUBLIC;

REVOKE ALL ON memory.fact_progress FROM PUBLIC;

-- inactive branches: read with the conversation, pruned by its owner; written only through
-- edit_message, regenerate and switch_branch
ALTER TABLE memory.branch_messages ENABLE ROW LEVEL SECURITY;

CREATE POLICY branch_messages_read ON memory.branch_messages FOR SELECT
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_read_row(c.id, c.user_id, (SELECT memory.current_user_id()),
                                            (SELECT memory._shared_with((SELECT memory.current_user_id()), false)))));

CREATE POLICY branch_messages_remove ON memory.branch_messages FOR DELETE
    USING (EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = conversation_id
                      AND memory._can_manage_row(c.user_id, (SELECT memory.current_user_id()))));

GRANT SELECT, DELETE ON memory.branch_messages TO PUBLIC;
