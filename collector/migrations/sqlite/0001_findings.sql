-- Nodes that have reported, with what their latest hello said.
CREATE TABLE nodes (
    name          TEXT PRIMARY KEY NOT NULL,
    boot_id       TEXT NOT NULL,
    stream_id     TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    first_seen    TEXT NOT NULL,
    last_seen     TEXT NOT NULL
);

-- Every finding, once. Agents resend what was not acknowledged, so (node, stream, seq)
-- is unique and a resend is ignored.
CREATE TABLE findings (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    node_name     TEXT NOT NULL,
    stream_id     TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    boot_id       TEXT NOT NULL,
    received_time TEXT NOT NULL,
    time          TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    severity      TEXT NOT NULL,
    -- The finding as nodeward.v1.Finding (protobuf), so new fields need no migration.
    body          BLOB NOT NULL,
    UNIQUE (node_name, stream_id, seq)
);

CREATE INDEX findings_by_rule ON findings (rule_id, id);
CREATE INDEX findings_by_node ON findings (node_name, id);
