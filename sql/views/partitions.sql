-- partitions: one row per catalogued AIA/HMI array: instrument, year, channel, file.
-- Read from the manifest: no file is listed or opened.
CREATE OR REPLACE VIEW partitions AS
SELECT * FROM (VALUES
       {partition_rows}
) AS p(instrument, year, channel, file);
