-- The fleet view: which cluster a node is in, whether it went silent, and its latest
-- posture snapshot. The snapshot is JSON (model::PostureSnapshot): it is read whole and
-- summarised in the collector, never queried field by field.
ALTER TABLE nodes ADD COLUMN cluster TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN silent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN posture TEXT;
ALTER TABLE nodes ADD COLUMN posture_generation INTEGER;
-- Generations increase per agent outbox (stream_id), so "older" only means something
-- within one stream.
ALTER TABLE nodes ADD COLUMN posture_stream_id TEXT;
ALTER TABLE nodes ADD COLUMN posture_received TEXT;

-- Sequence numbers of the findings the collector makes itself (node-silent, node-back),
-- so they are keyed (node, stream "collector", seq) and stored once like any other.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);

-- Retention deletes from the oldest; filters on severity use this with the id order.
CREATE INDEX findings_by_severity ON findings (severity, id);
