-- Schema version 2: the probe photos of searches under review, so a
-- reviewer on any node sees the probe a search on another node kept.

CREATE TABLE review_probes (
    request_id text PRIMARY KEY,
    bytes bytea NOT NULL
);
