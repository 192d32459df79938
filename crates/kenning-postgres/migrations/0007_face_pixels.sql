-- Schema version 7: each face's size in source-image pixels (the shorter
-- side of the detector's box), which the small-face rule of Similarity
-- needs at search time (kenning_core::quality). NULL for faces indexed
-- before: they score as they did. Added to the partitioned parent, so every
-- collection's partition gets the column.

ALTER TABLE faces ADD COLUMN pixels real;
