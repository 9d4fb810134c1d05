-- The cluster-wide per-user connection cap on Postgres (realtime/limits,
-- conncap_postgres.go): one row per open connection, refreshed by its instance,
-- counted only until expires_at.
CREATE TABLE IF NOT EXISTS realtime_conns (
    bucket     text NOT NULL,
    key        text NOT NULL,
    user_key   text NOT NULL,
    instance   text NOT NULL DEFAULT '',
    since      timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (bucket, key)
);

CREATE INDEX IF NOT EXISTS realtime_conns_user ON realtime_conns (bucket, user_key);
