-- frame_stats before `sdoml-sql stats` has run: empty, with its columns.
CREATE OR REPLACE VIEW frame_stats AS
SELECT NULL::VARCHAR AS instrument, NULL::INTEGER AS year, NULL::VARCHAR AS channel, NULL::BIGINT AS idx,
       NULL::BIGINT AS nan_count, NULL::BIGINT AS zero_count, NULL::FLOAT AS min, NULL::FLOAT AS max,
       NULL::DOUBLE AS mean, NULL::DOUBLE AS std, NULL::FLOAT AS p01, NULL::FLOAT AS p50, NULL::FLOAT AS p99,
       NULL::DOUBLE AS disk_mean, NULL::DOUBLE AS offdisk_mean
WHERE false;
