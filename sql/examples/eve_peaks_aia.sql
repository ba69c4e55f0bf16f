-- EVE line peaks joined to AIA frames: the five brightest Fe XVIII samples and, for each,
-- the nearest 171A frame (either direction; ties go to the earlier frame).
WITH peaks AS (
    SELECT idx AS eve_idx, time, "Fe XVIII" AS irradiance
    FROM eve
    WHERE "Fe XVIII" IS NOT NULL
    ORDER BY irradiance DESC, time
    LIMIT 5
)
SELECT p.eve_idx, p.time, p.irradiance, f.year, f.channel, f.idx, f.T_OBS,
       date_diff('microsecond', p.time, f.T_OBS) / 1e6 AS offset_s
FROM peaks p
JOIN LATERAL (
    SELECT year, channel, idx, T_OBS
    FROM aia
    WHERE channel = '171A' AND T_OBS IS NOT NULL
    ORDER BY abs(date_diff('microsecond', p.time, T_OBS)), T_OBS, year, idx
    LIMIT 1
) f ON true
ORDER BY p.irradiance DESC, p.time;
