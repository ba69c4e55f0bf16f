-- frame_quality: one row per AIA/HMI frame: instrument, year, channel, idx, T_OBS,
-- good (BOOLEAN: no flag raised), flags (VARCHAR[], empty when good), has_stats (whether the
-- pixel flags were checked: `sdoml-sql stats` has run for the frame; without it nan,
-- partial_nan and dark are unknown, not false), quality_bits (INTEGER[]: the bits set in QUALITY).
-- Flags and their rules (thresholds in the `rules` CTE):
--   from headers (right after build)
--   duplicate_time    another frame of the same channel (any year) has the same T_OBS: every
--                     such frame but the first by (year, idx) is flagged
--   time_outside_year T_OBS is missing or not in the year of the array's group (SDOMLv2#2)
--   channel_mismatch  AIA: WAVELNTH, or the number WAVE_STR starts with, is not the channel's
--                     wavelength (a frame filed under the wrong channel)
--   quality_nonzero   QUALITY <> 0 (decoded in quality_bits)
--   exposure_outlier  AIA: EXPTIME missing, <= 0, or above 1.5 x the channel's nominal
--                     exposure (its median EXPTIME over all years). Short exposures are never
--                     flagged: automatic exposure control shortens them during flares.
--   off_centre        CRPIX1 or CRPIX2 more than 5 pixels from the channel's median
--   from pixels (once `sdoml-sql stats` has run)
--   nan               every pixel is NaN (SDOMLv2#1)
--   partial_nan       some pixels, not all, are NaN
--   dark              AIA: disk_mean below 0.5 x the median disk_mean of the channel's other
--                     frames within 6 hours (as in an eclipse); needs 2 such frames. Flares
--                     only brighten frames, so they are never dark.
CREATE OR REPLACE VIEW frame_quality AS
WITH
rules AS (
    SELECT 1.5 AS exposure_ratio, 5.0 AS centre_px, 0.5 AS dark_ratio, INTERVAL 6 HOURS AS dark_window
),
headers AS (  -- the header keys the rules read; an instrument's view without them has NULL
    SELECT 'aia' AS instrument, year, channel, idx, T_OBS, WAVELNTH, WAVE_STR, QUALITY, EXPTIME, CRPIX1, CRPIX2
    FROM (SELECT NULL::BIGINT AS WAVELNTH, NULL::VARCHAR AS WAVE_STR, NULL::BIGINT AS QUALITY,
                 NULL::DOUBLE AS EXPTIME, NULL::DOUBLE AS CRPIX1, NULL::DOUBLE AS CRPIX2 WHERE false
          UNION ALL BY NAME SELECT * FROM aia)
    UNION ALL
    SELECT 'hmi', year, channel, idx, T_OBS, NULL, NULL, QUALITY, NULL, CRPIX1, CRPIX2
    FROM (SELECT NULL::BIGINT AS QUALITY, NULL::DOUBLE AS CRPIX1, NULL::DOUBLE AS CRPIX2 WHERE false
          UNION ALL BY NAME SELECT * FROM hmi)
),
nominal AS (  -- per channel: nominal exposure and median reference pixel
    SELECT instrument, channel, median(EXPTIME) AS exptime, median(CRPIX1) AS crpix1, median(CRPIX2) AS crpix2
    FROM headers GROUP BY ALL
),
firsts AS (  -- per repeated (channel, T_OBS): the first frame by (year, idx)
    SELECT instrument, channel, T_OBS, min({'year': year, 'idx': idx}) AS first
    FROM headers WHERE T_OBS IS NOT NULL
    GROUP BY ALL HAVING count(*) > 1
),
pixels AS (
    SELECT s.instrument, s.year, s.channel, s.idx, s.nan_count, s.min IS NULL AS all_nan,
           s.instrument = 'aia' AND s.disk_mean < (SELECT dark_ratio FROM rules) * median(s.disk_mean) OVER (
               PARTITION BY s.instrument, s.channel ORDER BY t.T_OBS
               RANGE BETWEEN (SELECT dark_window FROM rules) PRECEDING AND (SELECT dark_window FROM rules) FOLLOWING
               EXCLUDE CURRENT ROW)
           AND count(s.disk_mean) OVER (
               PARTITION BY s.instrument, s.channel ORDER BY t.T_OBS
               RANGE BETWEEN (SELECT dark_window FROM rules) PRECEDING AND (SELECT dark_window FROM rules) FOLLOWING
               EXCLUDE CURRENT ROW) >= 2 AS dark
    FROM frame_stats s JOIN frame_times t USING (instrument, year, channel, idx)
),
checked AS (
    SELECT h.instrument, h.year, h.channel, h.idx, h.T_OBS, h.QUALITY,
           f.first IS NOT NULL AND f.first <> {'year': h.year, 'idx': h.idx} AS duplicate_time,
           h.T_OBS IS NULL OR year(h.T_OBS) <> h.year AS time_outside_year,
           h.instrument = 'aia' AND (h.WAVELNTH IS DISTINCT FROM TRY_CAST(regexp_extract(h.channel, '^([0-9]+)A$', 1) AS BIGINT)
               OR regexp_extract(h.WAVE_STR, '^([0-9]+)', 1) IS DISTINCT FROM regexp_extract(h.channel, '^([0-9]+)A$', 1))
               AS channel_mismatch,
           coalesce(h.QUALITY, 0) <> 0 AS quality_nonzero,
           h.instrument = 'aia' AND (h.EXPTIME IS NULL OR h.EXPTIME <= 0
               OR h.EXPTIME > (SELECT exposure_ratio FROM rules) * n.exptime) AS exposure_outlier,
           coalesce(abs(h.CRPIX1 - n.crpix1) > (SELECT centre_px FROM rules)
               OR abs(h.CRPIX2 - n.crpix2) > (SELECT centre_px FROM rules), false) AS off_centre,
           p.idx IS NOT NULL AS has_stats,
           coalesce(p.all_nan, false) AS nan,
           coalesce(p.nan_count > 0 AND NOT p.all_nan, false) AS partial_nan,
           coalesce(p.dark, false) AS dark
    FROM headers h
    JOIN nominal n USING (instrument, channel)
    LEFT JOIN firsts f ON f.instrument = h.instrument AND f.channel = h.channel AND f.T_OBS = h.T_OBS
    LEFT JOIN pixels p ON p.instrument = h.instrument AND p.year = h.year AND p.channel = h.channel AND p.idx = h.idx
)
SELECT instrument, year, channel, idx, T_OBS,
       NOT (duplicate_time OR time_outside_year OR channel_mismatch OR quality_nonzero OR exposure_outlier
            OR off_centre OR nan OR partial_nan OR dark) AS good,
       list_filter(['duplicate_time', 'time_outside_year', 'channel_mismatch', 'quality_nonzero',
                    'exposure_outlier', 'off_centre', 'nan', 'partial_nan', 'dark'],
                   lambda name, i: [duplicate_time, time_outside_year, channel_mismatch, quality_nonzero,
                                 exposure_outlier, off_centre, nan, partial_nan, dark][i]) AS flags,
       has_stats,
       list_filter(range(32), lambda b: (coalesce(QUALITY, 0) >> b) & 1 = 1)::INTEGER[] AS quality_bits
FROM checked;
