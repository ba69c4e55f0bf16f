-- frame_times: the time index of every AIA and HMI frame: instrument, year, channel, idx,
-- T_OBS. The same rows as frames, but it reads only these columns and binds from one file's
-- footer per instrument (every partition file has idx and T_OBS), where aia/hmi/frames merge
-- the schemas of all files (union_by_name): the macros search it, so they start fast.
-- {aia_times} / {hmi_times} are read_parquet(...) over the instrument's files, or the empty
-- aia / hmi view when the catalog has none.
CREATE OR REPLACE VIEW frame_times AS
SELECT 'aia' AS instrument, year, channel, idx, T_OBS FROM {aia_times}
UNION ALL
SELECT 'hmi' AS instrument, year, channel, idx, T_OBS FROM {hmi_times};
