"""The distribution the layout will make for the two tables the hot paths touch — `conversations`
and `conversation_messages` by conversation, co-located — applied with the policies dropped,
because Citus refuses today's (docs/scaling.md). For the Citus stage's routing tests and
bench/citus_core.py; not a layout anyone should run with users' data."""

DISTRIBUTE = """
SET citus.enable_unsafe_triggers = on;
ALTER TABLE memory.message_embeddings DROP CONSTRAINT message_embeddings_message_id_fkey;
ALTER TABLE memory.conversation_messages DROP CONSTRAINT conversation_messages_pkey,
    ADD PRIMARY KEY (conversation_id, id);
SELECT create_distributed_table('memory.conversations', 'id');
SELECT create_distributed_table('memory.conversation_messages', 'conversation_id', colocate_with => 'memory.conversations');
"""

DROP_POLICIES = """
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT policyname, tablename FROM pg_policies WHERE schemaname = 'memory' LOOP
    EXECUTE format('DROP POLICY %I ON memory.%I', r.policyname, r.tablename);
  END LOOP;
END $$;
"""
