-- Schema version 3: stored-video jobs and their results, so any node can
-- answer GetFaceSearch for a job another node ran, and a job whose node
-- died is resumed by another once its lease ends.

CREATE TABLE video_jobs (
    job_id text PRIMARY KEY,
    idempotency_key text UNIQUE,
    -- The job as the embedded store keeps it (JSON).
    job bytea NOT NULL,
    -- The node running it, until lease_until_ms (ms since the epoch).
    owner text,
    lease_until_ms bigint NOT NULL DEFAULT 0
);

CREATE TABLE video_results (
    job_id text NOT NULL REFERENCES video_jobs ON DELETE CASCADE,
    sort_order smallint NOT NULL,
    position bigint NOT NULL,
    item bytea NOT NULL,
    PRIMARY KEY (job_id, sort_order, position)
);

CREATE TABLE video_persons (
    job_id text NOT NULL REFERENCES video_jobs ON DELETE CASCADE,
    person bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (job_id, person)
);

CREATE TABLE video_secrets (
    name text PRIMARY KEY,
    value bytea NOT NULL
);
