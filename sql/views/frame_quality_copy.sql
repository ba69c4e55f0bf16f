-- frame_quality read from its materialized copy (CATALOG/frame_quality/data.parquet; remote: the file the manifest names), written
-- by sdoml_sql/query/copies.py from views/frame_quality.sql (the rules live there) and
-- used only while its stamp matches the catalog's headers and frame_stats files.
CREATE OR REPLACE VIEW frame_quality AS
SELECT instrument, year, channel, idx, T_OBS, good, flags, has_stats, quality_bits
FROM read_parquet('{catalog}/{copy_file}');
