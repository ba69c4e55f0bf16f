-- partitions when the catalog has no AIA or HMI data: an empty view with the same columns.
CREATE OR REPLACE VIEW partitions AS
SELECT NULL::VARCHAR AS instrument, NULL::INTEGER AS year, NULL::VARCHAR AS channel, NULL::VARCHAR AS file
WHERE false;
