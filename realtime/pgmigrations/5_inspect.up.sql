-- The operator console's connection inspector on Postgres (monitoring/inspect,
-- inspect_postgres.go): a query goes to every instance as a notification on the channel
-- realtime_inspect; each instance puts its answer here and notifies
-- realtime_inspect_reply with the query's id; the asker reads and deletes its answers.
-- Answers nobody read (the asker went away) are deleted a minute later by the next query.
CREATE TABLE IF NOT EXISTS realtime_inspect_answers (
    query    text        NOT NULL,
    instance text        NOT NULL,
    body     bytea       NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (query, instance)
);
