-- array_attrs: keys whose list length differs from the frame count (e.g. DRMS_ID in 2020),
-- kept whole: instrument, year, channel, key, n_values, values (the list as JSON).
CREATE OR REPLACE VIEW array_attrs AS
SELECT * FROM read_parquet('{catalog}/array_attrs/*/*/*/*.parquet', hive_partitioning = true,
    union_by_name = true, hive_types = {'instrument': VARCHAR, 'year': INTEGER, 'channel': VARCHAR});
