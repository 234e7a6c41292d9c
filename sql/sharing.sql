-- Sharing: members (viewers read, editors also write), consent (shares beyond
-- memory.max_unrequested_shares wait as offers), transfer of ownership (an offer the recipient
-- accepts), and archiving. Who may do what is the rule of access.sql.

-- ---- members -----------------------------------------------------------------------------------

-- Makes user_id a member of the conversation as 'viewer' (reads it: messages, build_context,
-- export, search, fork) or 'editor' (also appends messages and requests summaries and replies);
-- sharing again changes the role. The owner's alone. Returns the membership.
-- Consent: while the recipient holds fewer than memory.max_unrequested_shares memberships from
-- this owner, a share takes effect at once (accepted_at set); beyond that it is an offer
-- (accepted_at NULL) that gives nothing until the recipient accepts it (memory.accept_shares).
-- So nobody can fill another user's list and search with conversations it did not ask for.
CREATE OR REPLACE FUNCTION memory._share_conversation(conversation_id uuid, user_id uuid, role text)
RETURNS memory.conversation_members
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_owner uuid;
    v_row   memory.conversation_members;
    v_cap   integer;
    v_held  bigint;
BEGIN
    IF _share_conversation.conversation_id IS NULL OR _share_conversation.user_id IS NULL OR _share_conversation.role IS NULL THEN
        RAISE EXCEPTION 'conversation_id, user_id and role must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF _share_conversation.role NOT IN ('viewer', 'editor') THEN
        RAISE EXCEPTION 'unknown member role "%"', memory._clip(_share_conversation.role)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use viewer or editor.';
    END IF;
    PERFORM memory._require(_share_conversation.conversation_id, 'manage');
    -- the conversation's lock: shares and unshares of one conversation serialise, and the count holds
    SELECT c.user_id INTO v_owner FROM memory.conversations c WHERE c.id = _share_conversation.conversation_id FOR NO KEY UPDATE;
    IF _share_conversation.user_id = v_owner THEN
        RAISE EXCEPTION 'user % owns conversation %: an owner is not a member', _share_conversation.user_id, _share_conversation.conversation_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT count(*) FROM memory.conversation_members m WHERE m.conversation_id = _share_conversation.conversation_id AND m.user_id <> _share_conversation.user_id) >= 1000 THEN
        RAISE EXCEPTION 'conversation % already has 1000 members', _share_conversation.conversation_id USING ERRCODE = 'program_limit_exceeded';
    END IF;
    -- the recipient's memberships from this owner, counted up to the setting (an index range); read
    -- here, after _require has loaded the library that defines the setting
    -- (counted before the INSERT, not in it: Citus refuses a subquery in an INSERT's VALUES)
    v_cap := current_setting('memory.max_unrequested_shares')::integer;
    SELECT count(*) INTO v_held FROM (SELECT 1 FROM memory.conversation_members m
                                       WHERE m.user_id = _share_conversation.user_id AND m.owner_id = v_owner LIMIT v_cap) x;
    INSERT INTO memory.conversation_members AS m (conversation_id, user_id, role, owner_id, accepted_at)
    VALUES (_share_conversation.conversation_id, _share_conversation.user_id, _share_conversation.role, v_owner,
            CASE WHEN v_held < v_cap THEN now() END)
    ON CONFLICT ON CONSTRAINT conversation_members_pkey DO UPDATE SET role = excluded.role
    RETURNING m.* INTO v_row;
    RETURN v_row;
END $$;

CREATE OR REPLACE FUNCTION memory.share_conversation(conversation_id uuid, user_id uuid, role text DEFAULT 'viewer') RETURNS memory.conversation_members
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._share_conversation($1, $2, $3);
$$;

-- Removes user_id from the conversation's members: the owner removes anyone, a member itself.
-- The removed member's next statement no longer sees the conversation. Returns whether there was
-- such a membership.
CREATE OR REPLACE FUNCTION memory._unshare_conversation(conversation_id uuid, user_id uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_gone integer;
BEGIN
    IF _unshare_conversation.conversation_id IS NULL OR _unshare_conversation.user_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id and user_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- a member may leave; removing anyone else is the owner's
    IF _unshare_conversation.user_id IS DISTINCT FROM memory.current_user_id() THEN
        PERFORM memory._require(_unshare_conversation.conversation_id, 'manage');
    END IF;
    DELETE FROM memory.conversation_members m WHERE m.conversation_id = _unshare_conversation.conversation_id AND m.user_id = _unshare_conversation.user_id;
    GET DIAGNOSTICS v_gone = ROW_COUNT;
    RETURN v_gone > 0;
END $$;

CREATE OR REPLACE FUNCTION memory.unshare_conversation(conversation_id uuid, user_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._unshare_conversation($1, $2);
$$;

-- Who may use the conversation: its owner (role 'owner') and its members, for anyone who may read
-- it.
CREATE OR REPLACE FUNCTION memory._list_members(conversation_id uuid)
RETURNS TABLE (user_id uuid, role text, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._require(_list_members.conversation_id, 'read');
    RETURN QUERY
        SELECT c.user_id, 'owner'::text, c.created_at FROM memory.conversations c WHERE c.id = _list_members.conversation_id
        UNION ALL
        (SELECT m.user_id, m.role, m.created_at FROM memory.conversation_members m
          WHERE m.conversation_id = _list_members.conversation_id ORDER BY m.created_at, m.user_id);
END $$;

CREATE OR REPLACE FUNCTION memory.list_members(conversation_id uuid) RETURNS TABLE (user_id uuid, role text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._list_members($1);
$$;

-- ---- consent: shares waiting for their recipient ------------------------------------------------

-- Who offers the caller shares it has not accepted: one row per sharer, with how many
-- conversations and the oldest and newest offer. (Each offer is a row of
-- memory.conversation_members with accepted_at NULL, which the caller can read.)
CREATE OR REPLACE FUNCTION memory.list_share_offers()
RETURNS TABLE (from_user_id uuid, offers bigint, oldest timestamptz, newest timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.owner_id, count(*), min(m.created_at), max(m.created_at)
      FROM memory.conversation_members m
     WHERE m.user_id = memory._identity() AND m.accepted_at IS NULL
     GROUP BY m.owner_id
     ORDER BY max(m.created_at) DESC, m.owner_id;
$$;

-- Accepts the caller's pending shares: every one from from_user_id, or only conversation_id's
-- (give one of the two). Returns how many took effect.
CREATE OR REPLACE FUNCTION memory._accept_shares(from_user_id uuid, conversation_id uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me uuid := memory._identity();
    v_n  integer;
BEGIN
    IF (_accept_shares.from_user_id IS NULL) = (_accept_shares.conversation_id IS NULL) THEN
        RAISE EXCEPTION 'give either from_user_id or conversation_id' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE memory.conversation_members m SET accepted_at = now()
     WHERE m.user_id = v_me AND m.accepted_at IS NULL
       AND (_accept_shares.from_user_id IS NULL OR m.owner_id = _accept_shares.from_user_id) AND (_accept_shares.conversation_id IS NULL OR m.conversation_id = _accept_shares.conversation_id);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

CREATE OR REPLACE FUNCTION memory.accept_shares(from_user_id uuid DEFAULT NULL, conversation_id uuid DEFAULT NULL) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._accept_shares($1, $2);
$$;

-- Ends every share from from_user_id to the caller at once, accepted or pending (one share is
-- left with memory.unshare_conversation). Returns how many memberships ended.
CREATE OR REPLACE FUNCTION memory._decline_shares(from_user_id uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me uuid := memory._identity();
    v_n  integer;
BEGIN
    IF _decline_shares.from_user_id IS NULL THEN
        RAISE EXCEPTION 'from_user_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    DELETE FROM memory.conversation_members m WHERE m.user_id = v_me AND m.owner_id = _decline_shares.from_user_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

CREATE OR REPLACE FUNCTION memory.decline_shares(from_user_id uuid) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._decline_shares($1);
$$;

-- ---- transfer of ownership ---------------------------------------------------------------------

-- A transfer is an offer: transfer_conversation records it, and nothing changes until user_id
-- accepts it (accept_transfer) or declines it (decline_transfer; the owner may withdraw it the
-- same way). A conversation has at most one offer: offering it again replaces the offer. Until
-- accepted, nothing of it is the recipient's: not in its list, search, usage or quota, and the
-- recipient cannot read it. What the recipient sees of an offer (list_transfer_offers): who
-- offers it, its title, size, and who else can read or write it.
-- Returns the conversation as it is (still the owner's). The owner's alone; at most 100 open
-- offers per sender.
CREATE OR REPLACE FUNCTION memory._transfer_conversation(conversation_id uuid, user_id uuid) RETURNS memory.conversations
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_owner uuid;
    v_row   memory.conversations;
BEGIN
    IF _transfer_conversation.conversation_id IS NULL OR _transfer_conversation.user_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id and user_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM memory._require(_transfer_conversation.conversation_id, 'manage');
    SELECT c.* INTO v_row FROM memory.conversations c WHERE c.id = _transfer_conversation.conversation_id FOR NO KEY UPDATE;
    v_owner := v_row.user_id;
    IF _transfer_conversation.user_id = v_owner OR _transfer_conversation.user_id = '00000000-0000-0000-0000-000000000000' THEN
        RAISE EXCEPTION 'cannot transfer conversation % to user %', _transfer_conversation.conversation_id, _transfer_conversation.user_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE WHEN _transfer_conversation.user_id = v_owner THEN 'That user already owns it.' ELSE 'The nil uuid is no user.' END;
    END IF;
    IF (SELECT count(*) FROM memory.conversation_transfers t WHERE t.from_user_id = v_owner AND t.conversation_id <> _transfer_conversation.conversation_id) >= 100 THEN
        RAISE EXCEPTION 'user % already offers 100 conversations', v_owner
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Offers end when accepted or declined; memory.decline_transfer withdraws one.';
    END IF;
    -- a renewed offer is dated now: excluded.created_at is its default, now() (Citus allows only
    -- immutable functions in DO UPDATE SET)
    INSERT INTO memory.conversation_transfers AS t (conversation_id, from_user_id, to_user_id)
    VALUES (_transfer_conversation.conversation_id, v_owner, _transfer_conversation.user_id)
    ON CONFLICT ON CONSTRAINT conversation_transfers_pkey DO UPDATE SET from_user_id = excluded.from_user_id, to_user_id = excluded.to_user_id,
                                                                        created_at = excluded.created_at;
    RETURN v_row;
END $$;

CREATE OR REPLACE FUNCTION memory.transfer_conversation(conversation_id uuid, user_id uuid) RETURNS memory.conversations
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._transfer_conversation($1, $2);
$$;

-- The transfer offers the caller has made and received, newest first, each with what the
-- recipient needs to decide: title, messages, tokens and the members (who else reads or writes).
CREATE OR REPLACE FUNCTION memory._list_transfer_offers()
RETURNS TABLE (conversation_id uuid, from_user_id uuid, to_user_id uuid, title text, message_count integer,
               total_tokens bigint, members jsonb, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.conversation_id, t.from_user_id, t.to_user_id, c.title, c.message_count, c.total_tokens,
           (SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', m.user_id, 'role', m.role) ORDER BY m.created_at, m.user_id), '[]')
              FROM memory.conversation_members m WHERE m.conversation_id = t.conversation_id AND m.accepted_at IS NOT NULL),
           t.created_at
      FROM memory.conversation_transfers t JOIN memory.conversations c ON c.id = t.conversation_id
     WHERE memory._identity() IN (t.from_user_id, t.to_user_id)
     ORDER BY t.created_at DESC, t.conversation_id;
$$;

CREATE OR REPLACE FUNCTION memory.list_transfer_offers() RETURNS TABLE (conversation_id uuid, from_user_id uuid, to_user_id uuid, title text, message_count integer,
               total_tokens bigint, members jsonb, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._list_transfer_offers();
$$;

-- The recipient takes the offered conversation: it becomes the caller's own. The previous owner
-- stays as an editor (it may leave with unshare_conversation); if the caller was a member, that
-- membership ends; the other members and the share links stay (the new owner sees them with
-- list_members and list_share_links, and manages them). The conversation keeps its agent_id, but
-- an agent applies only to its own owner's conversations: until the new owner sets an agent of its
-- own, the defaults apply. Jobs queued before run as they were requested. The messages' search
-- lexeme of their owner is rewritten (a cost that follows the conversation's size).
CREATE OR REPLACE FUNCTION memory._accept_transfer(conversation_id uuid) RETURNS memory.conversations
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me     uuid := memory._identity();
    v_offer  memory.conversation_transfers;
    v_row    memory.conversations;
    v_config regconfig := memory._search_config()::regconfig;
BEGIN
    -- the offer first: nobody else may take the conversation's lock (an aborted transaction holds
    -- its locks until it ends)
    IF NOT EXISTS (SELECT 1 FROM memory.conversation_transfers t WHERE t.conversation_id = _accept_transfer.conversation_id AND t.to_user_id = v_me) THEN
        RAISE EXCEPTION 'no transfer of conversation % is offered to you', coalesce(_accept_transfer.conversation_id::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    SELECT c.* INTO v_row FROM memory.conversations c WHERE c.id = _accept_transfer.conversation_id FOR NO KEY UPDATE;
    SELECT t.* INTO v_offer FROM memory.conversation_transfers t WHERE t.conversation_id = _accept_transfer.conversation_id AND t.to_user_id = v_me;
    -- an offer made by someone who no longer owns the conversation is void
    IF v_offer.conversation_id IS NULL OR v_row.user_id IS DISTINCT FROM v_offer.from_user_id THEN
        RAISE EXCEPTION 'no transfer of conversation % is offered to you', coalesce(_accept_transfer.conversation_id::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    DELETE FROM memory.conversation_transfers t WHERE t.conversation_id = _accept_transfer.conversation_id;
    DELETE FROM memory.conversation_members m WHERE m.conversation_id = _accept_transfer.conversation_id AND m.user_id = v_me;
    UPDATE memory.conversation_members m SET owner_id = v_me WHERE m.conversation_id = _accept_transfer.conversation_id;
    INSERT INTO memory.conversation_members (conversation_id, user_id, role, owner_id, accepted_at)
    VALUES (_accept_transfer.conversation_id, v_offer.from_user_id, 'editor', v_me, now());
    UPDATE memory.conversations c SET user_id = v_me WHERE c.id = _accept_transfer.conversation_id RETURNING c.* INTO v_row;
    UPDATE memory.conversation_messages m
       SET search_vector = memory._search_vector(v_config, m.conversation_id, v_me, m.content, m.tool_calls)
     WHERE m.conversation_id = _accept_transfer.conversation_id;
    RETURN v_row;
END $$;

CREATE OR REPLACE FUNCTION memory.accept_transfer(conversation_id uuid) RETURNS memory.conversations
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM memory._accept_transfer($1);
$$;

-- Ends an offer: its recipient declines it, or the owner withdraws it. Returns whether there was
-- such an offer.
CREATE OR REPLACE FUNCTION memory._decline_transfer(conversation_id uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_me uuid := memory._identity();
    v_n  integer;
BEGIN
    DELETE FROM memory.conversation_transfers t WHERE t.conversation_id = _decline_transfer.conversation_id AND v_me IN (t.from_user_id, t.to_user_id);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n > 0;
END $$;

CREATE OR REPLACE FUNCTION memory.decline_transfer(conversation_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._decline_transfer($1);
$$;

-- ---- archive -----------------------------------------------------------------------------------

-- An archived conversation stays readable (and exportable, searchable) but is hidden from
-- list_conversations by default and refuses new messages (SQLSTATE 55000). The owner's.
CREATE OR REPLACE FUNCTION memory.archive_conversation(id uuid) RETURNS memory.conversations
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.conversations;
BEGIN
    PERFORM memory._require(archive_conversation.id, 'manage');
    UPDATE memory.conversations c SET archived_at = coalesce(c.archived_at, now()) WHERE c.id = archive_conversation.id RETURNING c.* INTO v_row;
    RETURN v_row;
END $$;

CREATE OR REPLACE FUNCTION memory.unarchive_conversation(id uuid) RETURNS memory.conversations
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row memory.conversations;
BEGIN
    PERFORM memory._require(unarchive_conversation.id, 'manage');
    UPDATE memory.conversations c SET archived_at = NULL WHERE c.id = unarchive_conversation.id RETURNING c.* INTO v_row;
    RETURN v_row;
END $$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._share_conversation(uuid, uuid, text),
    memory._unshare_conversation(uuid, uuid),
    memory._list_members(uuid),
    memory._accept_shares(uuid, uuid),
    memory._decline_shares(uuid),
    memory._transfer_conversation(uuid, uuid),
    memory._list_transfer_offers(),
    memory._accept_transfer(uuid),
    memory._decline_transfer(uuid)
FROM PUBLIC;
