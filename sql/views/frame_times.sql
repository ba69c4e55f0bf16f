-- frame_times: the time index of every AIA and HMI frame: instrument, year, channel, idx,
-- T_OBS. The same rows as frames, narrower: the macros search it. A time filter on it skips
-- the years outside the filter without opening their files (the aia/hmi views' branches).
CREATE OR REPLACE VIEW frame_times AS
SELECT 'aia' AS instrument, year, channel, idx, T_OBS FROM aia
UNION ALL
SELECT 'hmi' AS instrument, year, channel, idx, T_OBS FROM hmi;
