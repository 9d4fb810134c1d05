-- Fleet health records on Postgres (monitoring/health, records_postgres.go): one
-- snapshot per live instance, expiring at expires_at unless put again.
CREATE TABLE IF NOT EXISTS realtime_health (
    bucket     text   NOT NULL,
    key        text   NOT NULL,
    value      bytea  NOT NULL,
    revision   bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (bucket, key)
);

CREATE SEQUENCE IF NOT EXISTS realtime_health_revision;

CREATE OR REPLACE FUNCTION realtime_health_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('realtime_health', COALESCE(NEW.bucket, OLD.bucket));
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS realtime_health_notify ON realtime_health;
CREATE TRIGGER realtime_health_notify AFTER INSERT OR UPDATE OR DELETE ON realtime_health
    FOR EACH ROW EXECUTE FUNCTION realtime_health_notify();
