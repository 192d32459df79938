-- Schema version 5: stream processor definitions, so any node answers
-- Describe/List for every processor, and a RUNNING processor is run by one
-- node at a time under a lease, taken over by another when its node dies.

CREATE TABLE stream_processors (
    name text PRIMARY KEY,
    -- The definition as the embedded store keeps it (JSON).
    def bytea NOT NULL,
    -- The node running it, until lease_until_ms (ms since the epoch).
    owner text,
    lease_until_ms bigint NOT NULL DEFAULT 0
);
