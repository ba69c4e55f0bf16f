-- frame_stats: pixel statistics of every AIA/HMI frame, written by `sdoml-sql stats`
-- (frame_stats/instrument=…/year=…/channel=…/data.parquet): instrument, year, channel, idx,
-- nan_count, zero_count, min, max, mean, std, p01, p50, p99 (NaN pixels left out; NULL for
-- an all-NaN frame), disk_mean and offdisk_mean (pixels within / beyond the solar radius
-- RSUN_OBS / CDELT1 of the frame's own CRPIX1/2). Join aia/hmi/frames USING (year, channel, idx).
-- Only current statistics: each file records the source fingerprint it was computed from
-- (Parquet key-value metadata sdoml_sql.fingerprint, "<headers fingerprint>:<chunks digest>");
-- a file whose headers fingerprint is not the partition's in the manifest (the catalog was
-- rebuilt from changed sources since) is left out until `sdoml-sql stats` runs again.
CREATE OR REPLACE VIEW frame_stats AS
WITH current_files AS (
    SELECT m.file_name
    FROM parquet_kv_metadata('{catalog}/frame_stats/*/*/*/*.parquet') m
    JOIN partition_index p
      ON p.instrument = regexp_extract(m.file_name, '/instrument=([^/]+)/year=([0-9]+)/channel=([^/]+)/', 1)
     AND p.year::VARCHAR = regexp_extract(m.file_name, '/instrument=([^/]+)/year=([0-9]+)/channel=([^/]+)/', 2)
     AND p.channel = regexp_extract(m.file_name, '/instrument=([^/]+)/year=([0-9]+)/channel=([^/]+)/', 3)
    WHERE decode(m.key) = 'sdoml_sql.fingerprint' AND split_part(decode(m.value), ':', 1) = p.fingerprint
)
SELECT instrument, year, channel, idx, nan_count, zero_count, min, max, mean, std, p01, p50, p99,
       disk_mean, offdisk_mean
FROM read_parquet('{catalog}/frame_stats/*/*/*/*.parquet', hive_partitioning = true, union_by_name = true,
    filename = true, hive_types = {'instrument': VARCHAR, 'year': INTEGER, 'channel': VARCHAR})
WHERE filename IN (SELECT file_name FROM current_files);
