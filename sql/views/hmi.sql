-- hmi: one row per HMI frame (channel = Bx, By or Bz); T_OBS is converted from TAI to UTC,
-- the original TAI string is in T_OBS_STR.
CREATE OR REPLACE VIEW hmi AS
SELECT * FROM read_parquet('{catalog}/hmi/*/*/*.parquet', hive_partitioning = true,
    union_by_name = true, hive_types = {'year': INTEGER, 'channel': VARCHAR});
