-- The one authorization rule. Every policy, public function and SECURITY DEFINER helper asks
-- these two questions and nothing else, so that who may read or write a conversation is decided
-- in exactly one place.
--
-- _can_read_row/_can_write_row judge a conversation row (its id and owner) for a caller. They are
-- plain SQL that PostgreSQL inlines into the policies, so the owner test stays an index condition;
-- for that they cannot pin search_path, and instead qualify every operator. The policies pass the
-- caller as (SELECT memory.current_user_id()), computed once per query, not once per row.
CREATE FUNCTION memory._can_read_row(conversation_id uuid, owner uuid, caller uuid) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $2 OPERATOR(pg_catalog.=) $3
$$;

CREATE FUNCTION memory._can_write_row(conversation_id uuid, owner uuid, caller uuid) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $2 OPERATOR(pg_catalog.=) $3
$$;

-- The same rule by conversation id, for SECURITY DEFINER helpers (which run outside RLS) and for
-- callers who want to ask. A role that bypasses RLS (superuser, Supabase's service_role) may, as
-- RLS lets it. Reveals nothing: false for a conversation that does not exist and for one the
-- caller may not see alike.
CREATE FUNCTION memory.can_read(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = $1 AND (memory._caller_bypasses_rls() OR memory._can_read_row(c.id, c.user_id, memory.current_user_id())));
$$;

CREATE FUNCTION memory.can_write(conversation_id uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM memory.conversations c
                    WHERE c.id = $1 AND (memory._caller_bypasses_rls() OR memory._can_write_row(c.id, c.user_id, memory.current_user_id())));
$$;
