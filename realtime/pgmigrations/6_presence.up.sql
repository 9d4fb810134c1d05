-- Presence on Postgres (realtime/presence, store_postgres.go): per instance and
-- channel one summary of the instance's members (a removal deletes the row), and per
-- instance one liveness record that lapses at expires_at unless heartbeated again.
-- scope keeps the servers of different namespaces apart. Expiry times are absolute
-- (set by the writer: now + TTL, now + retention), so any store deletes what expired,
-- in every scope: the rows of a namespace whose servers are all gone (an `encore test`
-- run) are deleted too. Changes are announced with
-- NOTIFY realtime_presence by the writer itself (no trigger: a removal's notification
-- carries the removal's version, which a deleted row no longer has).
--
-- Both tables are UNLOGGED: presence is rebuilt by its writers within a heartbeat, so
-- it needs no WAL. A crash of the server (or a failover) empties them; every store's
-- listener then reconnects and its tracker writes everything again.
CREATE UNLOGGED TABLE IF NOT EXISTS realtime_presence (
    scope      text        NOT NULL,
    channel    text        NOT NULL,
    instance   text        NOT NULL,
    inc        text        NOT NULL,
    v          bigint      NOT NULL,
    summary    jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL, -- updated_at + the retention
    PRIMARY KEY (scope, channel, instance)
);

-- Purge (a dead instance's rows) and the retention cleanup.
CREATE INDEX IF NOT EXISTS realtime_presence_instance ON realtime_presence (scope, instance);
CREATE INDEX IF NOT EXISTS realtime_presence_expires ON realtime_presence (expires_at);

CREATE UNLOGGED TABLE IF NOT EXISTS realtime_presence_alive (
    scope      text        NOT NULL,
    instance   text        NOT NULL,
    inc        text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (scope, instance)
);

CREATE INDEX IF NOT EXISTS realtime_presence_alive_expires ON realtime_presence_alive (expires_at);
