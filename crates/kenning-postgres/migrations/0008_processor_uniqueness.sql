-- Schema version 8: one stream processor per source and per output, held
-- by the database itself, so two nodes creating processors at the same
-- moment cannot both take one (CreateStreamProcessor also counts the
-- processors under an advisory lock for its limit).

ALTER TABLE stream_processors ADD COLUMN source text, ADD COLUMN output text;

-- Processors from before: the oldest of each source (and of each output)
-- gets the column. Any later one on the same source, which two nodes'
-- racing creates could have let in, keeps NULL so the index can be built;
-- the one filled in still holds the source against new processors.
UPDATE stream_processors p SET source = first.source
FROM (
    SELECT DISTINCT ON (d ->> 'source') name, d ->> 'source' AS source
    FROM (SELECT name, convert_from(def, 'UTF8')::jsonb AS d FROM stream_processors) s
    ORDER BY d ->> 'source', (d ->> 'created_ms')::bigint, name
) first
WHERE p.name = first.name;

UPDATE stream_processors p SET output = first.output
FROM (
    SELECT DISTINCT ON (d ->> 'output') name, d ->> 'output' AS output
    FROM (SELECT name, convert_from(def, 'UTF8')::jsonb AS d FROM stream_processors) s
    ORDER BY d ->> 'output', (d ->> 'created_ms')::bigint, name
) first
WHERE p.name = first.name;

CREATE UNIQUE INDEX stream_processors_source ON stream_processors (source);
CREATE UNIQUE INDEX stream_processors_output ON stream_processors (output);
