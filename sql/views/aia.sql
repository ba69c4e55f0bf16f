-- aia: one row per AIA frame. idx (position of the frame in the Zarr array year/channel),
-- one column per FITS keyword (times as TIMESTAMP UTC, original strings in <KEY>_STR),
-- year INTEGER and channel VARCHAR from the hive path. The scan reads the partition files
-- the manifest names, one branch per year and schema with its time range (query/scans.py).
CREATE OR REPLACE VIEW aia AS
{aia_scan};
