-- partitions when the catalog has no AIA or HMI data: an empty view with the same columns.
CREATE OR REPLACE TABLE partition_index AS
SELECT NULL::VARCHAR AS instrument, NULL::INTEGER AS year, NULL::VARCHAR AS channel, NULL::VARCHAR AS file,
       NULL::VARCHAR AS fingerprint
WHERE false;
CREATE OR REPLACE VIEW partitions AS SELECT instrument, year, channel, file FROM partition_index;
