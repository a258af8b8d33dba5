-- The same tables as migrations/sqlite, in PostgreSQL's types: times are TIMESTAMPTZ
-- (microseconds), the posture snapshot is JSONB, flags are BOOLEAN. Several collector
-- replicas may write at once; every write is keyed, so none can duplicate another's.

-- Nodes that have reported, with what their latest hello said, and the fleet view: which
-- cluster a node is in, whether it went silent, and its latest posture snapshot
-- (model::PostureSnapshot as JSON, read whole and summarised in the collector).
CREATE TABLE nodes (
    name               TEXT PRIMARY KEY,
    boot_id            TEXT NOT NULL,
    stream_id          TEXT NOT NULL,
    agent_version      TEXT NOT NULL,
    first_seen         TIMESTAMPTZ NOT NULL,
    last_seen          TIMESTAMPTZ NOT NULL,
    cluster            TEXT NOT NULL DEFAULT '',
    silent             BOOLEAN NOT NULL DEFAULT FALSE,
    posture            JSONB,
    -- Generations increase per agent outbox (stream_id), so "older" only means
    -- something within one stream.
    posture_generation BIGINT,
    posture_stream_id  TEXT,
    posture_received   TIMESTAMPTZ
);

-- Every finding, once. Agents resend what was not acknowledged, so (node, stream, seq)
-- is unique and a resend is ignored, whichever replica receives it.
CREATE TABLE findings (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node_name     TEXT NOT NULL,
    stream_id     TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    boot_id       TEXT NOT NULL,
    received_time TIMESTAMPTZ NOT NULL,
    time          TIMESTAMPTZ NOT NULL,
    rule_id       TEXT NOT NULL,
    severity      TEXT NOT NULL,
    -- The finding as nodeward.v1.Finding (protobuf), so new fields need no migration.
    body          BYTEA NOT NULL,
    UNIQUE (node_name, stream_id, seq)
);

CREATE INDEX findings_by_rule ON findings (rule_id, id);
CREATE INDEX findings_by_node ON findings (node_name, id);
-- Filters on severity use this with the id order.
CREATE INDEX findings_by_severity ON findings (severity, id);
-- Retention deletes what was received before a cutoff.
CREATE INDEX findings_by_received ON findings (received_time);

-- Sequence numbers of the findings the collector makes itself (node-silent, node-back),
-- so they are keyed (node, stream "collector", seq) and stored once like any other.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
