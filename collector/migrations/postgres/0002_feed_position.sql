-- A commit-ordered cursor for the SOC feed when several collector replicas share this
-- database. Identity ids are drawn when a row is inserted, not when its transaction
-- commits, so a reader that has seen id N can still find id N-1 appear later: a
-- subscriber resuming after N would miss it. feed_position is drawn from the one-row
-- feed_clock inside the inserting transaction; the row lock that UPDATE takes is held
-- until commit, so positions are handed out in commit order and every reader sees a
-- gap-free prefix of them (see store/postgres.rs). SOC clients see feed_position as the
-- finding's id.

CREATE TABLE feed_clock (
    -- At most one row.
    one   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    value BIGINT NOT NULL
);

ALTER TABLE findings ADD COLUMN feed_position BIGINT;
-- Existing findings keep the ids subscribers already hold as cursors.
UPDATE findings SET feed_position = id;
INSERT INTO feed_clock (value) SELECT COALESCE(MAX(id), 0) FROM findings;
ALTER TABLE findings ALTER COLUMN feed_position SET NOT NULL;

CREATE UNIQUE INDEX findings_by_position ON findings (feed_position);
-- The filtered reads, now in feed order.
CREATE INDEX findings_by_rule_position ON findings (rule_id, feed_position);
CREATE INDEX findings_by_node_position ON findings (node_name, feed_position);
CREATE INDEX findings_by_severity_position ON findings (severity, feed_position);
DROP INDEX findings_by_rule;
DROP INDEX findings_by_node;
DROP INDEX findings_by_severity;

-- Replicas still running the previous version insert without feed_position while a
-- rolling upgrade is under way: this default draws their rows' positions from the same
-- clock under the same lock, so they neither fail nor break the commit order.
CREATE FUNCTION nodeward_next_feed_position() RETURNS BIGINT LANGUAGE SQL VOLATILE AS
$$ UPDATE feed_clock SET value = value + 1 RETURNING value $$;
ALTER TABLE findings ALTER COLUMN feed_position SET DEFAULT nodeward_next_feed_position();
