-- SDO-FM's aligned index (the aligndata_*.csv of sdofm/datasets/SDOML.py) from the aligned
-- macro: every 12 minutes, the nearest frame of each AIA channel and HMI component within
-- 6 minutes and the nearest EVE sample, as positions in that year's arrays, so that
-- aia[str(Time.year)][channel][idx_<channel>] reads the frame, as SDO-FM's loader does.
-- Kept, as in SDO-FM: grid times where every channel and EVE have one and every EVE line but
-- Fe XVI_2 is positive; the grid spans EVE's coverage within SDO-FM's EVE years (before 2015).
-- Also dropped: grid times with a frame filed under another year (the loader would read
-- the wrong array).
WITH a AS (
    SELECT * FROM aligned(['131A', '1600A', '1700A', '171A', '193A', '211A', '304A', '335A', '94A',
                           'Bx', 'By', 'Bz'],
                          greatest(TIMESTAMP '2010-01-01', time_bucket(INTERVAL 12 minutes, (SELECT min(time) FROM eve))),
                          least(TIMESTAMP '2015-01-01', (SELECT max(time) FROM eve) + INTERVAL 12 minutes),
                          INTERVAL 12 minutes, INTERVAL 6 minutes)
),
usable_eve AS (
    SELECT idx FROM eve WHERE COLUMNS(lambda c: c NOT IN ('idx', 'time', 'group', 'Fe XVI_2')) > 0
)
SELECT a.time AS "Time",
       a.frames['131A'].idx AS "idx_131A", a.frames['1600A'].idx AS "idx_1600A",
       a.frames['1700A'].idx AS "idx_1700A", a.frames['171A'].idx AS "idx_171A",
       a.frames['193A'].idx AS "idx_193A", a.frames['211A'].idx AS "idx_211A",
       a.frames['304A'].idx AS "idx_304A", a.frames['335A'].idx AS "idx_335A",
       a.frames['94A'].idx AS "idx_94A",
       a.frames['Bx'].idx AS "idx_Bx", a.frames['By'].idx AS "idx_By", a.frames['Bz'].idx AS "idx_Bz",
       a.eve_idx AS idx_eve
FROM a JOIN usable_eve e ON e.idx = a.eve_idx
WHERE list_bool_and(list_transform(map_values(a.frames), lambda f: coalesce(f.year = year(a.time), false)))
ORDER BY a.time;
