-- Share links: read-only links to a conversation up to a message, for readers without a login.
-- The token is the authorization; the owner creates, lists and revokes them.

-- Returns a new token (about 244 random bits, from two version-4 UUIDs) for the conversation's
-- messages up to up_to_seq (default: all it has now), valid until expires_at (default: until
-- revoked). The owner's; at most 100 links per conversation.
CREATE OR REPLACE FUNCTION memory._create_share_link(conversation_id uuid, expires_at timestamptz, up_to_seq bigint)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_last  bigint;
    v_upto  bigint;
    v_token text := 'mxs_' || encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'hex');
BEGIN
    IF _create_share_link.conversation_id IS NULL THEN
        RAISE EXCEPTION 'conversation_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM memory._require(_create_share_link.conversation_id, 'manage');
    SELECT c.last_seq INTO v_last FROM memory.conversations c WHERE c.id = _create_share_link.conversation_id FOR NO KEY UPDATE;
    v_upto := coalesce(_create_share_link.up_to_seq, v_last);
    IF v_upto < 0 OR v_upto > v_last THEN
        RAISE EXCEPTION 'up_to_seq % is outside the conversation (0..%)', v_upto, v_last USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF _create_share_link.expires_at IS NOT NULL AND _create_share_link.expires_at <= now() THEN
        RAISE EXCEPTION 'expires_at is not in the future' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT count(*) FROM memory.share_links l WHERE l.conversation_id = _create_share_link.conversation_id) >= 100 THEN
        RAISE EXCEPTION 'conversation % already has 100 share links', _create_share_link.conversation_id
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Revoke some, or delete revoked ones with memory.revoke_share_link.';
    END IF;
    INSERT INTO memory.share_links (conversation_id, token_hash, up_to_seq, expires_at, created_by)
    VALUES (_create_share_link.conversation_id, sha256(convert_to(v_token, 'UTF8')), v_upto, _create_share_link.expires_at, coalesce(memory.current_user_id(), '00000000-0000-0000-0000-000000000000'));
    RETURN v_token;
END $$;

CREATE OR REPLACE FUNCTION memory.create_share_link(conversation_id uuid, expires_at timestamptz DEFAULT NULL, up_to_seq bigint DEFAULT NULL) RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._create_share_link($1, $2, $3);
$$;

-- The conversation behind a token, as export_conversation's json up to the link's message, for
-- anyone holding the token (the anon role included). A wrong, expired or revoked token gives the
-- same error after the same work: one look-up of the token's hash. Expiry is checked against the
-- clock, so that a transaction opened before it cannot keep a link alive.
CREATE OR REPLACE FUNCTION memory._get_shared_conversation(token text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_link memory.share_links;
    v_conv memory.conversations;
BEGIN
    SELECT l.* INTO v_link FROM memory.share_links l
     WHERE l.token_hash = sha256(convert_to(left(coalesce(_get_shared_conversation.token, ''), 200), 'UTF8'))
       AND l.revoked_at IS NULL AND (l.expires_at IS NULL OR l.expires_at > clock_timestamp());
    IF NOT FOUND THEN
        RAISE EXCEPTION 'share link is not valid' USING ERRCODE = 'no_data_found';
    END IF;
    SELECT c.* INTO v_conv FROM memory.conversations c WHERE c.id = v_link.conversation_id;
    RETURN memory._export_json(v_conv, v_link.up_to_seq);
END $$;

CREATE OR REPLACE FUNCTION memory.get_shared_conversation(token text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._get_shared_conversation($1);
$$;

-- The conversation's links (no tokens: they are not stored), newest first. The owner's.
CREATE OR REPLACE FUNCTION memory.list_share_links(conversation_id uuid)
RETURNS TABLE (id uuid, up_to_seq bigint, expires_at timestamptz, revoked_at timestamptz, created_at timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM memory._require(list_share_links.conversation_id, 'manage');
    RETURN QUERY SELECT l.id, l.up_to_seq, l.expires_at, l.revoked_at, l.created_at
                   FROM memory.share_links l WHERE l.conversation_id = list_share_links.conversation_id
                  ORDER BY l.created_at DESC, l.id;
END $$;

-- Revokes a link at once (its token stops working for the next statement). Revoking a revoked
-- link deletes it. Returns false when there is no such link of a conversation the caller owns.
CREATE OR REPLACE FUNCTION memory._revoke_share_link(id uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_link memory.share_links;
BEGIN
    SELECT l.* INTO v_link FROM memory.share_links l WHERE l.id = _revoke_share_link.id;
    IF NOT FOUND OR NOT memory.can_manage(v_link.conversation_id) THEN
        RETURN false;
    END IF;
    IF v_link.revoked_at IS NULL THEN
        UPDATE memory.share_links l SET revoked_at = now() WHERE l.id = _revoke_share_link.id;
    ELSE
        DELETE FROM memory.share_links l WHERE l.id = _revoke_share_link.id;
    END IF;
    RETURN true;
END $$;

CREATE OR REPLACE FUNCTION memory.revoke_share_link(id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT memory._revoke_share_link($1);
$$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC
REVOKE EXECUTE ON FUNCTION
    memory._create_share_link(uuid, timestamp with time zone, bigint),
    memory._get_shared_conversation(text),
    memory._revoke_share_link(uuid)
FROM PUBLIC;
