-- roles.sql - the PostgreSQL roles conduitd and its applications use. Not a
-- migration: roles belong to the whole cluster, and creating them needs a
-- superuser (or CREATEROLE). Run once per database, as a superuser, before
-- the first start (again after it is harmless: every step is idempotent):
--
--     sudo -u postgres createdb conduitd
--     sudo -u postgres psql -d conduitd -f /usr/share/doc/conduitd/roles.sql
--
--   conduit_writer  LOGIN. The daemon: creates the schema (its migrations)
--                   and writes everything. pg_conninfo names it:
--                   pg_conninfo = user=conduit_writer dbname=conduitd
--                   (a password, if the server asks for one, belongs in
--                   ~conduitd/.pgpass or PGPASSFILE, not in the config).
--   conduit_reader  NOLOGIN group for applications: SELECT on every table
--                   and view conduitd creates (now and later: default
--                   privileges), EXECUTE on its functions, LISTEN on its
--                   channels (LISTEN needs no grant), and INSERT/UPDATE/
--                   DELETE on watched_keys and watched_outpoints, where
--                   applications register what they want notifications
--                   for. Give each application its own login in it:
--                   CREATE ROLE app LOGIN IN ROLE conduit_reader;
--
-- docs/OPERATIONS.md, "PostgreSQL roles"; tests/functional/test_ops_pg.py.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'conduit_writer') THEN
        CREATE ROLE conduit_writer LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'conduit_reader') THEN
        CREATE ROLE conduit_reader NOLOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO conduit_writer, conduit_reader',
                   current_database());
END
$$;

-- PostgreSQL 15 no longer lets every role create in schema public.
GRANT USAGE, CREATE ON SCHEMA public TO conduit_writer;
GRANT USAGE ON SCHEMA public TO conduit_reader;

-- What conduit_writer creates from now on is readable by the readers.
ALTER DEFAULT PRIVILEGES FOR ROLE conduit_writer IN SCHEMA public
    GRANT SELECT ON TABLES TO conduit_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE conduit_writer IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO conduit_reader;

-- And what already exists (roles.sql run after a first start).
GRANT SELECT ON ALL TABLES IN SCHEMA public TO conduit_reader;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO conduit_reader;
DO $$
BEGIN
    IF to_regclass('public.watched_keys') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON watched_keys, watched_outpoints TO conduit_reader;
    END IF;
END
$$;
