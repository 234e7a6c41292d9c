-- The chat app's database, run once by a superuser in it (run.sh and the tests do):
-- memory_ext, and the app's login as PostgREST would have it. The app logs in as chat_app, which
-- can do nothing by itself (NOINHERIT); per request it switches to `authenticated` and sets the
-- verified JWT's claims, transaction-local, so RLS decides what each user sees.
CREATE EXTENSION IF NOT EXISTS memory_ext CASCADE;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chat_app') THEN
        CREATE ROLE chat_app LOGIN NOINHERIT;
    END IF;
    -- memory_ext trusts request.jwt.claims only from logins that are members of these roles
    EXECUTE format('ALTER DATABASE %I SET memory.jwt_gateway_roles = %L',
                   current_database(), 'authenticator, chat_app');
END
$$;

GRANT authenticated TO chat_app;
