-- The realtime bus on Postgres (realtime/bus, bus_postgres*.go).
--
-- realtime_streams has one row per stream. Its row lock is the single writer lock:
-- every publishing transaction locks it first, so sequences are assigned and
-- committed in one order and a reader of seq > cursor never sees a gap that a slower
-- transaction fills later. last_seq and total_bytes are cumulative counters; epoch
-- changes when the row is created again (a deleted stream).
CREATE TABLE IF NOT EXISTS realtime_streams (
    name        text PRIMARY KEY,
    epoch       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_seq    bigint NOT NULL DEFAULT 0,
    total_bytes bigint NOT NULL DEFAULT 0
);

-- One row per event. body is the stored event without seq (the same JSON JetStream
-- stores); channel and id are copied out for the replay filter and deduplication.
-- at is the database clock at append (age retention, dedup window), start_bytes the
-- stream's total_bytes before the event (size retention).
CREATE TABLE IF NOT EXISTS realtime_events (
    stream      text   NOT NULL,
    seq         bigint NOT NULL,
    id          text   NOT NULL,
    channel     text   NOT NULL,
    body        bytea  NOT NULL,
    at          timestamptz NOT NULL,
    start_bytes bigint NOT NULL,
    PRIMARY KEY (stream, seq)
);

CREATE INDEX IF NOT EXISTS realtime_events_channel ON realtime_events (stream, channel, seq);
CREATE INDEX IF NOT EXISTS realtime_events_id ON realtime_events (stream, id);
