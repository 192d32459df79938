-- Schema version 3: a collection's own calibration (CalibrateCollection),
-- an opaque JSON document the collections layer writes; NULL means the
-- recogniser's shipped calibration is in force.

ALTER TABLE collections ADD COLUMN calibration text;
