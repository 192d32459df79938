-- Kenning's schema, version 1: everything a node keeps.

CREATE EXTENSION IF NOT EXISTS vector;

-- Store-wide settings and counters (the key-encryption key's check value,
-- the access keys' change counter).
CREATE TABLE kenning_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

-- Collection generations come from one clock, as in the embedded store, so a
-- re-created collection never repeats an old value.
CREATE SEQUENCE generation_clock;

CREATE TABLE collections (
    -- The partition key of the collection's faces; never reused.
    key bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id text PRIMARY KEY,
    arn text NOT NULL,
    created_at_ms bigint NOT NULL,
    model_name text NOT NULL,
    model_version text NOT NULL,
    dim integer NOT NULL CHECK (dim BETWEEN 1 AND 16000),
    distance text NOT NULL CHECK (distance IN ('euclidean', 'cosine')),
    -- How the HNSW index holds the vectors: 'vector' (float4) or 'halfvec'.
    precision text NOT NULL CHECK (precision IN ('vector', 'halfvec')),
    policy text NOT NULL,
    face_count bigint NOT NULL DEFAULT 0,
    user_count bigint NOT NULL DEFAULT 0,
    generation bigint NOT NULL,
    next_seq bigint NOT NULL DEFAULT 1
);

-- One partition per collection (faces_<key>), created with its HNSW index
-- in CreateCollection's transaction and dropped with the collection.
CREATE TABLE faces (
    collection bigint NOT NULL,
    seq bigint NOT NULL,
    face_id uuid NOT NULL,
    image_id uuid NOT NULL,
    external_image_id text,
    -- width, height, left, top as fractions of the image
    bbox real[] NOT NULL,
    confidence real NOT NULL,
    indexed_at_ms bigint NOT NULL,
    last_matched_at_ms bigint,
    user_id text,
    embedding vector NOT NULL,
    PRIMARY KEY (collection, seq),
    UNIQUE (collection, face_id)
) PARTITION BY LIST (collection);

-- Retention scans: by indexing time, and by last match (or indexing).
CREATE INDEX faces_by_indexed ON faces (collection, indexed_at_ms, seq);
CREATE INDEX faces_by_activity
    ON faces (collection, (coalesce(last_matched_at_ms, indexed_at_ms)), seq);

CREATE TABLE users (
    collection bigint NOT NULL REFERENCES collections (key) ON DELETE CASCADE,
    user_id text NOT NULL,
    created_at_ms bigint NOT NULL,
    -- In association order.
    face_ids uuid[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (collection, user_id)
);

-- The audit trail: each row holds one line exactly as the file trail would,
-- so `kenning audit verify` checks it the same way and a migrated chain is
-- byte for byte the same chain.
CREATE TABLE audit_records (
    seq bigint PRIMARY KEY,
    line text NOT NULL
);

-- The chain's head. Every append locks this one row, so writers on any
-- number of nodes queue here and the chain cannot fork.
CREATE TABLE audit_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO audit_head (seq, hash) VALUES (0, repeat('0', 64));

CREATE TABLE review_items (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    review_id text NOT NULL UNIQUE,
    item jsonb NOT NULL
);

-- Access keys; secrets are sealed with a key-encryption key that is never
-- stored here.
CREATE TABLE access_keys (
    access_key_id text PRIMARY KEY,
    record jsonb NOT NULL,
    root boolean NOT NULL,
    revoked boolean NOT NULL
);
-- At most one live root key, however many nodes start at once.
CREATE UNIQUE INDEX one_live_root_key ON access_keys (root) WHERE root AND NOT revoked;

-- API tokens: only their keyed hashes.
CREATE TABLE api_tokens (
    token_id text PRIMARY KEY,
    record jsonb NOT NULL,
    revoked boolean NOT NULL
);
