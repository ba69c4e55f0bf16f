-- frame_stats: pixel statistics of every AIA/HMI frame, written by `sdoml-sql stats`
-- (frame_stats/instrument=…/year=…/channel=…/data.parquet): instrument, year, channel, idx,
-- nan_count, zero_count, min, max, mean, std, p01, p50, p99 (NaN pixels left out; NULL for
-- an all-NaN frame), disk_mean and offdisk_mean (pixels within / beyond the solar radius
-- RSUN_OBS / CDELT1 of the frame's own CRPIX1/2). Join aia/hmi/frames USING (year, channel, idx).
CREATE OR REPLACE VIEW frame_stats AS
SELECT instrument, year, channel, idx, nan_count, zero_count, min, max, mean, std, p01, p50, p99,
       disk_mean, offdisk_mean
FROM read_parquet('{catalog}/frame_stats/*/*/*/*.parquet', hive_partitioning = true, union_by_name = true,
    hive_types = {'instrument': VARCHAR, 'year': INTEGER, 'channel': VARCHAR});
