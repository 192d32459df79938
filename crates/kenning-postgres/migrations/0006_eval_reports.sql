-- Schema version 6: published evaluation reports (`kenning eval fairness
-- --json` output), so the console's accuracy page and the accountability
-- report show the same reports on every node.

CREATE TABLE eval_reports (
    name text PRIMARY KEY,
    -- The report as published (JSON text, checked before it is stored).
    report text NOT NULL,
    updated_ms bigint NOT NULL
);
