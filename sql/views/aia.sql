-- aia: one row per AIA frame. idx (position of the frame in the Zarr array year/channel),
-- one column per FITS keyword (times as TIMESTAMP UTC, original strings in <KEY>_STR),
-- year INTEGER and channel VARCHAR from the hive path.
CREATE OR REPLACE VIEW aia AS
SELECT * FROM read_parquet('{catalog}/aia/*/*/*.parquet', hive_partitioning = true,
    union_by_name = true, hive_types = {'year': INTEGER, 'channel': VARCHAR});
