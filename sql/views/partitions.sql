-- partitions: one row per catalogued AIA/HMI array: instrument, year, channel, file.
-- Read from the directory listing only (no Parquet file is opened).
CREATE OR REPLACE VIEW partitions AS
SELECT regexp_extract(file, '/(aia|hmi)/year=[^/]+/channel=[^/]+/[^/]+$', 1) AS instrument,
       regexp_extract(file, '/year=([0-9]+)/channel=[^/]+/[^/]+$', 1)::INTEGER AS year,
       regexp_extract(file, '/channel=([^/]+)/[^/]+$', 1) AS channel,
       file
FROM glob('{catalog}/*/year=*/channel=*/*.parquet')
WHERE instrument IN ('aia', 'hmi');
