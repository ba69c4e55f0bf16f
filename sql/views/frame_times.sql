-- frame_times: the time index of every AIA and HMI frame: instrument, year, channel, idx,
-- T_OBS. The same rows as frames, narrower: the macros search it.
-- frame_year_slack(): how many years a frame's T_OBS may lie from its partition's year (from
-- the manifest's time index; large when a partition has no index entry). The macros filter
-- year BETWEEN year(start) - slack AND year(stop) + slack, which DuckDB applies to the file
-- paths, so a one-year search opens one year's files.
CREATE OR REPLACE MACRO frame_year_slack() AS {year_slack};
CREATE OR REPLACE VIEW frame_times AS
SELECT 'aia' AS instrument, year, channel, idx, T_OBS FROM aia
UNION ALL
SELECT 'hmi' AS instrument, year, channel, idx, T_OBS FROM hmi;
