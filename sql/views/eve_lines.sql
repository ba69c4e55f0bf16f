-- eve_lines: one row per EVE line: name, ion, wavelength (nm), logT (log10 K), attrs (JSON).
CREATE OR REPLACE VIEW eve_lines AS
SELECT * FROM read_parquet('{catalog}/eve_lines/*/*.parquet', hive_partitioning = true,
    union_by_name = true, hive_types = {'group': VARCHAR});
