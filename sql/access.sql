-- The one authorization rule. Every policy, public function and SECURITY DEFINER helper asks
-- these questions and nothing else, so that who may do what with a conversation is decided in
-- exactly one place:
--   read   (messages, build_context, export, search, fork): its owner and its members;
--   write  (append messages, summaries, request summaries and replies): its owner and its editors;
--   manage (title, agent, metadata, archive, delete, remove messages, share): its owner alone.
-- A role that bypasses RLS (superuser, Supabase's service_role) may do all three, as RLS lets it.
--
-- _can_read_row/_can_write_row/_can_manage_row judge a conversation row (its id and owner) for a
-- caller. They are plain SQL that PostgreSQL inlines into the policies, so the owner test stays an
-- index condition; for that they cannot pin search_path, and instead qualify every operator. The
-- policies pass the caller as (SELECT memory.current_user_id()) and the conversations shared with
-- the caller as (SELECT memory._shared_with(...)): each computed once per query, and the shared
-- list only when a row is not the caller's own (an owner's queries never read the members table).
CREATE OR REPLACE FUNCTION memory._can_read_row(conversation_id uuid, owner uuid, caller uuid, shared uuid[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $2 OPERATOR(pg_catalog.=) $3 OR $1 OPERATOR(pg_catalog.=) ANY ($4)
$$;

CREATE OR REPLACE FUNCTION memory._can_write_row(conversation_id uuid, owner uuid, caller uuid, editable uuid[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $2 OPERATOR(pg_catalog.=) $3 OR $1 OPERATOR(pg_catalog.=) ANY ($4)
$$;

CREATE OR REPLACE FUNCTION memory._can_manage_row(owner uuid, caller uuid) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $1 OPERATOR(pg_catalog.=) $2
$$;

-- Whether `caller` may append to conversation `conversation_id` owned by `owner`: what the
-- messages' insert trigger asks, as the caller, of the row it is about to lock. A function of its
-- own so that a layout where the members live on other nodes can answer it from the conversation's
-- row (docs/scaling.md). Plain SQL, inlined like the three above.
CREATE OR REPLACE FUNCTION memory._can_write_conversation(conversation_id uuid, owner uuid, caller uuid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT memory._can_write_row($1, $2, $3, memory._shared_with($3, true))
$$;

-- The conversations shared with `caller`: all of them, or those it may write (editors_only).
-- Only accepted shares count: a pending one (an offer, see share_conversation) gives nothing.
-- Under the members table's RLS a caller sees its own memberships only, so asking about someone
-- else returns nothing.
CREATE OR REPLACE FUNCTION memory._shared_with(caller uuid, editors_only boolean) RETURNS uuid[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(m.conversation_id), '{}')
      FROM memory.conversation_members m
     WHERE m.user_id = _shared_with.caller AND m.accepted_at IS NOT NULL AND (NOT _shared_with.editors_only OR m.role = 'editor');
$$;

-- The same rule by conversation id, for SECURITY DEFINER helpers (which run outside RLS) and for
-- callers who want to ask. Reveals nothing: false for a conversation that does not exist and for
-- one the caller may not see alike.
CREATE OR REPLACE FUNCTION memory.can_read(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = can_read.conversation_id AND (memory._caller_bypasses_rls()
                                         OR memory._can_read_row(c.id, c.user_id, memory.current_user_id(),
                                                                 memory._shared_with(memory.current_user_id(), false))));
$$;

CREATE OR REPLACE FUNCTION memory.can_write(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = can_write.conversation_id AND (memory._caller_bypasses_rls()
                                         OR memory._can_write_row(c.id, c.user_id, memory.current_user_id(),
                                                                  memory._shared_with(memory.current_user_id(), true))));
$$;

CREATE OR REPLACE FUNCTION memory.can_manage(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = can_manage.conversation_id AND (memory._caller_bypasses_rls()
                                         OR memory._can_manage_row(c.user_id, memory.current_user_id())));
$$;

-- Raises unless the caller may do `action` ('read', 'write' or 'manage') with the conversation:
-- P0002 "does not exist" when it cannot even read it (nothing is revealed), 42501 naming what the
-- caller lacks when it is a member without that right.
CREATE OR REPLACE FUNCTION memory._require(conversation_id uuid, action text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT memory.can_read(_require.conversation_id) THEN
        RAISE EXCEPTION 'conversation % does not exist', coalesce(_require.conversation_id::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    IF _require.action = 'write' AND NOT memory.can_write(_require.conversation_id) THEN
        RAISE EXCEPTION 'conversation % is shared with you read-only', _require.conversation_id
            USING ERRCODE = 'insufficient_privilege', HINT = 'Its owner can make you an editor.';
    END IF;
    IF _require.action = 'manage' AND NOT memory.can_manage(_require.conversation_id) THEN
        RAISE EXCEPTION 'only the owner of conversation % may do this', _require.conversation_id USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- The caller's identity, or 42501 when there is none.
CREATE OR REPLACE FUNCTION memory._identity() RETURNS uuid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me uuid := memory.current_user_id();
BEGIN
    IF v_me IS NULL THEN
        RAISE EXCEPTION 'no user identity: memory.current_user_id() is NULL'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Through PostgREST/Supabase send a JWT with a sub claim; from psql or an application server SET memory.user_id = ''<uuid>''.';
    END IF;
    RETURN v_me;
END $$;

-- Whether an agent applies to a conversation (given by its agent_id and owner): the agent is the
-- conversation's agent_id AND belongs to the conversation's owner, so nobody can give someone
-- else's conversations a system prompt by creating an agent with a known id, nor read another
-- user's agent by naming it in a conversation of their own. Plain SQL without SET clauses, every
-- operator qualified: PostgreSQL inlines it into joins and the agents' policy, which then use the
-- agents' primary key.
CREATE OR REPLACE FUNCTION memory._agent_applies(agent memory.agents, conversation_agent_id uuid, conversation_owner uuid)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT agent.id OPERATOR(pg_catalog.=) conversation_agent_id AND agent.user_id OPERATOR(pg_catalog.=) conversation_owner
$$;

-- memory.pass_caller() (Rust) signs the caller for the other nodes of a Citus cluster (see
-- docs/scaling.md). It reads through SPI: its search_path is pinned like every other function's.
ALTER FUNCTION memory.pass_caller() SET search_path = pg_catalog, pg_temp;
