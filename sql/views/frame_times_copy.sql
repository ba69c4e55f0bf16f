-- frame_times read from its materialized copy (CATALOG/frame_times/data.parquet; remote: the file the manifest names): the same
-- rows as views/frame_times.sql in one file sorted by instrument, channel and T_OBS, so a
-- macro's time range reads a few row groups of one file instead of binding every partition.
-- Written by sdoml_sql/query/copies.py and used only while its stamp matches the manifest.
CREATE OR REPLACE MACRO frame_year_slack() AS {year_slack};
CREATE OR REPLACE VIEW frame_times AS
SELECT instrument, year, channel, idx, T_OBS
FROM read_parquet('{catalog}/{copy_file}');
