-- Feature flags on Postgres (flags/flag, store_postgres.go): one row per stored flag
-- (the JSON record the NATS bucket would hold), revisions from one sequence, an
-- audit log, and a notification on every change so that every instance reloads.
CREATE TABLE IF NOT EXISTS realtime_flags (
    bucket   text   NOT NULL,
    name     text   NOT NULL,
    record   text   NOT NULL,
    revision bigint NOT NULL,
    PRIMARY KEY (bucket, name)
);

CREATE SEQUENCE IF NOT EXISTS realtime_flag_revision;

CREATE TABLE IF NOT EXISTS realtime_flag_audit (
    bucket text   NOT NULL,
    seq    bigint GENERATED ALWAYS AS IDENTITY,
    entry  text   NOT NULL,
    PRIMARY KEY (bucket, seq)
);

-- Changes made with psql (the emergency path) notify the instances too.
CREATE OR REPLACE FUNCTION realtime_flags_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('realtime_flags', COALESCE(NEW.bucket, OLD.bucket));
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS realtime_flags_notify ON realtime_flags;
CREATE TRIGGER realtime_flags_notify AFTER INSERT OR UPDATE OR DELETE ON realtime_flags
    FOR EACH ROW EXECUTE FUNCTION realtime_flags_notify();
