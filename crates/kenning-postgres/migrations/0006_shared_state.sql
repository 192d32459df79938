-- Schema version 6: what nodes kept to themselves until now.

-- Published evaluation reports (`kenning eval fairness --json` output), so
-- the console's accuracy page and the accountability report show the same
-- reports on every node.
CREATE TABLE eval_reports (
    name text PRIMARY KEY,
    -- The report as published (JSON text, checked before it is stored).
    report text NOT NULL,
    updated_ms bigint NOT NULL
);

-- The counters of a running stream processor as its node saved them with
-- its last lease renewal (JSON), so any node can describe them.
ALTER TABLE stream_processors ADD COLUMN counters text;
