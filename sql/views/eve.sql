-- eve: one row per EVE sample: idx, time (TIMESTAMP UTC), one REAL column per line
-- ("Fe XX_2"; NULL where the source value is negative), "group" from the hive path.
CREATE OR REPLACE VIEW eve AS
SELECT * FROM read_parquet('{catalog}/eve/*/*.parquet', hive_partitioning = true,
    union_by_name = true, hive_types = {'group': VARCHAR});
