-- memory_ext's distributed layout on Citus, step 1 of 2: the tables of a conversation distributed by
-- its id and co-located, so that a conversation, its messages, members, summaries, daily figures,
-- share links, transfer offer and extract progress live on one node and each call about it is
-- routed there. Run by scripts/distribute.sh on the coordinator of a Citus cluster whose nodes all
-- have memory_ext; docs/scaling.md explains the layout.
--
-- This step alone leaves the distributed tables with no policy (row-level security still on, so
-- an ordinary login reads and writes nothing in them): step 2, rule_on_rows.sql, gives them the
-- policies Citus can run on the shards.
--
-- Both steps run in one transaction (their SET LOCALs count on it), one statement per query (psql -f
-- does it): Citus forwards a DDL statement to the workers with the text of the query that held it,
-- and a worker refuses several statements in one.

-- Runs a command on every worker through Citus's own connections (each commits on its worker as
-- it goes); a worker's error stops the script. A function of this session, for both steps.
CREATE FUNCTION pg_temp.memory_ext_on_every_worker(cmd text) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM run_command_on_workers(cmd) LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'on the worker %:%: %', r.nodename, r.nodeport, r.result;
        END IF;
    END LOOP;
END $f$;

-- On every node, the coordinator and each worker, with Citus's DDL propagation off for the block (a
-- worker refuses DDL on the extension's objects otherwise):
-- - Citus refuses to distribute a table whose policies hold subqueries, as one server's do. The
--   workers' copies of memory_ext's tables (made by CREATE EXTENSION there) become the workers'
--   view of the distributed tables and keep their policies: theirs go too.
-- - No NOTIFY of new messages: the shards' trigger would notify on the worker, and Citus cannot
--   commit in two phases a transaction that notified (a write over several shards).
DO $layout$
DECLARE
    v_drop text := format($cmd$DO $w$ DECLARE r record; v_was text := current_setting('citus.enable_ddl_propagation'); BEGIN
        PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
        FOR r IN SELECT policyname, tablename FROM pg_policies
                  WHERE schemaname = 'memory' AND tablename = ANY (%L::text[]) LOOP
            EXECUTE format('DROP POLICY %%I ON memory.%%I', r.policyname, r.tablename);
        END LOOP;
        PERFORM set_config('citus.enable_ddl_propagation', v_was, true);
    END $w$$cmd$, ARRAY['conversations', 'conversation_messages', 'conversation_members', 'conversation_summaries',
                        'message_days_rollup', 'message_days_marks', 'share_links', 'conversation_transfers',
                        'fact_progress']);
    v_quiet text := format($cmd$DO $w$ DECLARE v_was text := current_setting('citus.enable_ddl_propagation'); BEGIN
        PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
        ALTER DATABASE %I SET memory.notify_messages = off;
        PERFORM set_config('citus.enable_ddl_propagation', v_was, true);
    END $w$$cmd$, current_database());
    v_cmd text;
BEGIN
    IF to_regclass('pg_dist_partition') IS NULL THEN
        RAISE EXCEPTION 'the distributed layout needs the citus extension in this database'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    -- the release these scripts are written for: they replace some of its functions (bumped with
    -- Cargo.toml's version when a release is cut)
    IF (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'memory_ext') IS DISTINCT FROM '0.3.0' THEN
        RAISE EXCEPTION 'the distributed layout is written for memory_ext 0.3.0; this database has %',
            coalesce((SELECT e.extversion FROM pg_extension e WHERE e.extname = 'memory_ext'), 'no memory_ext')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'ALTER EXTENSION memory_ext UPDATE first';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' AND isactive) THEN
        RAISE EXCEPTION 'the distributed layout needs worker nodes: add them with citus_add_node first'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'memory.conversations'::regclass) THEN
        RAISE EXCEPTION 'memory_ext is distributed already in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOREACH v_cmd IN ARRAY ARRAY[v_drop, v_quiet] LOOP
        EXECUTE v_cmd;
        PERFORM pg_temp.memory_ext_on_every_worker(v_cmd);
    END LOOP;
END $layout$;

-- memory_ext's triggers run on the shards: the counters, checks and rule are kept where the rows are
SET citus.enable_unsafe_triggers = on;
-- one connection per node for the whole transaction, as Citus advises for a transaction that mixes
-- DDL and writes on distributed tables (in parallel mode it may refuse one after the other)
SET LOCAL citus.multi_shard_modify_mode = 'sequential';
-- Distributing a table copies its rows to the shards, where memory_ext's triggers would take them
-- for new rows (numbered again, counted again, checked against conversations the shards cannot
-- see yet): the copies run with no trigger, on every node the transaction reaches
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL session_replication_role = replica;
-- The tables that stay on the coordinator keep no foreign key into the distributed ones. Such a
-- key's check reads the conversation's placement as the table's owner, which Citus refuses after a
-- user's own write in the same transaction ("modified in this transaction by a different user"),
-- and its cascade does not fire for a deletion made on a shard: erasure removes their rows itself.
ALTER TABLE memory.jobs DROP CONSTRAINT jobs_conversation_id_fkey;
ALTER TABLE memory.facts DROP CONSTRAINT facts_conversation_id_fkey;
ALTER TABLE memory.branch_messages DROP CONSTRAINT branch_messages_conversation_id_fkey;
ALTER TABLE memory.message_embeddings DROP CONSTRAINT message_embeddings_conversation_id_fkey,
    DROP CONSTRAINT message_embeddings_message_id_fkey;
ALTER TABLE memory.llm_calls DROP CONSTRAINT llm_calls_conversation_id_fkey;
-- a distributed table's unique keys hold its distribution column
ALTER TABLE memory.conversation_messages DROP CONSTRAINT conversation_messages_pkey,
    ADD PRIMARY KEY (conversation_id, id);
SELECT create_distributed_table('memory.conversations', 'id');
SELECT create_distributed_table('memory.conversation_messages', 'conversation_id', colocate_with => 'memory.conversations');
SELECT create_distributed_table('memory.conversation_members', 'conversation_id', colocate_with => 'memory.conversations');
ALTER TABLE memory.conversation_summaries DROP CONSTRAINT conversation_summaries_pkey,
    ADD PRIMARY KEY (conversation_id, id);
SELECT create_distributed_table('memory.conversation_summaries', 'conversation_id', colocate_with => 'memory.conversations');
SELECT create_distributed_table('memory.message_days_rollup', 'conversation_id', colocate_with => 'memory.conversations');
SELECT create_distributed_table('memory.message_days_marks', 'conversation_id', colocate_with => 'memory.conversations');
-- a link is found by its token's hash alone (a query of every shard): the hash stays unique within
-- its conversation only, as 32 random bytes make it anyway
ALTER TABLE memory.share_links DROP CONSTRAINT share_links_pkey, ADD PRIMARY KEY (conversation_id, id),
    DROP CONSTRAINT share_links_token_hash_key, ADD UNIQUE (conversation_id, token_hash);
CREATE INDEX share_links_token_hash_idx ON memory.share_links (token_hash);
SELECT create_distributed_table('memory.share_links', 'conversation_id', colocate_with => 'memory.conversations');
-- one row per conversation: a transfer offered (its sender and recipient see it, no rule needed),
-- how far the extract jobs have read (memory_ext's own)
SELECT create_distributed_table('memory.conversation_transfers', 'conversation_id', colocate_with => 'memory.conversations');
SELECT create_distributed_table('memory.fact_progress', 'conversation_id', colocate_with => 'memory.conversations');
SET LOCAL session_replication_role = origin;
-- The rows copied to the shards leave the coordinator's own storage of the tables, where they would
-- stay on disk, hidden from queries and out of erasure's reach
SELECT truncate_local_data_after_distributing_table(p.logicalrelid)
  FROM pg_dist_partition p WHERE p.logicalrelid::regclass::text LIKE 'memory.%';

-- Deleting conversations for users, with what the dropped keys cascaded to: their jobs, stored
-- branch messages and vectors on the coordinator, and facts' link to them
-- (memory._forget_conversations). Both run on the coordinator only (CREATE OR REPLACE of an
-- extension's function is not propagated, and nothing on a shard calls them).
--
-- delete_conversation deletes as its definer, for an owner or a role that bypasses RLS, as the
-- policy on conversations lets them: the coordinator's tables are not the caller's to write, and a
-- definer may not touch a placement the caller has written in the same transaction. Who the caller
-- is, is answered here, on the coordinator, and sent as a value (a question about the caller that
-- travels with a query is answered on the worker about the definer).
CREATE OR REPLACE FUNCTION memory.delete_conversation(id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    v_me     uuid := memory.current_user_id();
    v_bypass boolean := memory._caller_bypasses_rls();
BEGIN
    DELETE FROM memory.conversations c
     WHERE c.id = delete_conversation.id AND (v_bypass OR c.user_id = v_me);
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM memory._forget_conversations(ARRAY[delete_conversation.id]);
    RETURN true;
END $f$;

-- The worker's retention batch, a conversation at a time: Citus locks rows only in a query routed
-- to one shard (a multi-shard FOR UPDATE is refused), so the due conversations are found first and
-- each locked on its own node, skipped if it is being written or was written since
CREATE OR REPLACE FUNCTION memory._retention_batch(days integer, batch integer, OUT conversations bigint, OUT messages bigint)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    r      record;
    v_n    integer;
    v_gone uuid[] := '{}';
BEGIN
    messages := 0;
    FOR r IN SELECT d.conversation_id, d.updated_at FROM memory._retention_due(_retention_batch.days) d
              ORDER BY d.updated_at, d.conversation_id LIMIT _retention_batch.batch LOOP
        PERFORM 1 FROM memory.conversations c WHERE c.id = r.conversation_id AND c.updated_at = r.updated_at
            FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        DELETE FROM memory.conversations c WHERE c.id = r.conversation_id RETURNING c.message_count INTO v_n;
        messages := messages + v_n;
        v_gone := v_gone || r.conversation_id;
    END LOOP;
    PERFORM memory._forget_conversations(v_gone);
    conversations := cardinality(v_gone);
END $f$;

-- For operators: the coordinator's rows about conversations deleted otherwise than by memory_ext's
-- functions (a user's plain DELETE through PostgREST, say), found by reading every conversation id
-- those tables hold (the whole of their conversation indexes) and asking the shards which are gone.
-- Returns how many conversations were forgotten.
CREATE OR REPLACE FUNCTION memory.forget_deleted_conversations() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    v_held uuid[];
    v_live uuid[];
    v_gone uuid[];
BEGIN
    IF NOT memory._caller_bypasses_rls() THEN
        RAISE EXCEPTION 'memory.forget_deleted_conversations is for superusers and roles that bypass row-level security'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT coalesce(array_agg(t.id), '{}') INTO v_held
      FROM (SELECT j.conversation_id FROM memory.jobs j UNION SELECT b.conversation_id FROM memory.branch_messages b
            UNION SELECT e.conversation_id FROM memory.message_embeddings e
            UNION SELECT f.conversation_id FROM memory.facts f) t(id)
     WHERE t.id IS NOT NULL;
    SELECT coalesce(array_agg(c.id), '{}') INTO v_live FROM memory.conversations c WHERE c.id = ANY (v_held);
    SELECT coalesce(array_agg(h.id), '{}') INTO v_gone FROM unnest(v_held) h(id) WHERE h.id <> ALL (v_live);
    PERFORM memory._forget_conversations(v_gone);
    RETURN cardinality(v_gone);
END $f$;
REVOKE EXECUTE ON FUNCTION memory.forget_deleted_conversations() FROM PUBLIC;
