-- partitions: one row per catalogued AIA/HMI array: instrument, year, channel, file.
-- Read from the manifest: no file is listed or opened. The rows are kept in a small table,
-- filled once when the views are created: a view of a VALUES list is bound again by every
-- query that uses it, ~4 ms at 168 partitions (nearest_frames and coverage use it). The table
-- also holds each partition's source fingerprint, which frame_stats checks its files against.
CREATE OR REPLACE TABLE partition_index AS
SELECT * FROM (VALUES
       {partition_rows}
) AS p(instrument, year, channel, file, fingerprint);
CREATE OR REPLACE VIEW partitions AS SELECT instrument, year, channel, file FROM partition_index;
