-- Table macros over the catalog views. Loaded after the views (views/*.sql).
-- Times are TIMESTAMP UTC; start/stop accept TIMESTAMP or ISO strings ('2010-08-27' or
-- '2010-08-27 12:00'), cadence/tolerance accept INTERVAL or strings ('12 minutes').
-- A grid is start, start + cadence, ... < stop; grid rows are numbered from 0 in "row".
-- cadence must have a fixed length (seconds to days, not months). Each frame is matched to the
-- grid rows within tolerance of it, so a tolerance of a few cadences is fast; a huge one is slow.

-- checked_interval: an interval argument, or an error naming it: NULL, a length in months or
-- years (not fixed), negative, or zero where `positive` (a cadence).
CREATE OR REPLACE MACRO checked_interval(value, name, positive) AS
CASE WHEN value IS NULL THEN error(name || ' is NULL: give an interval such as ''12 minutes''')
     WHEN datepart('year', value::INTERVAL) * 12 + datepart('month', value::INTERVAL) <> 0
         THEN error(name || ' ''' || value::VARCHAR || ''' has no fixed length: use seconds, minutes, hours or days')
     WHEN epoch_us(value::INTERVAL) < 0 OR (positive AND epoch_us(value::INTERVAL) = 0)
         THEN error(name || ' ''' || value::VARCHAR || ''' must be '
                    || CASE WHEN positive THEN 'positive' ELSE 'zero or more' END)
     ELSE value::INTERVAL END;

-- checked_stop: stop as a TIMESTAMP, or an error when it is before start (an empty grid
-- without a word would look like a catalog without frames).
CREATE OR REPLACE MACRO checked_stop(start, stop) AS
CASE WHEN stop::TIMESTAMP < start::TIMESTAMP
     THEN error('stop ' || stop::TIMESTAMP::VARCHAR || ' is before start ' || start::TIMESTAMP::VARCHAR
                || ': give start first')
     ELSE stop::TIMESTAMP END;

-- channel_tolerance: the tolerance of channel number n of channels (as text) when tolerance
-- is one interval, a list matching channels, or a MAP channel -> interval.
CREATE OR REPLACE MACRO channel_tolerance(tolerance, channels, channel, n) AS
CASE json_type(to_json(tolerance))
    WHEN 'ARRAY' THEN CASE WHEN json_array_length(to_json(tolerance)) = len(channels)
                           THEN to_json(tolerance)->>(n - 1)
                           ELSE error('tolerance lists ' || json_array_length(to_json(tolerance))
                                      || ' intervals for ' || len(channels) || ' channels') END
    WHEN 'OBJECT' THEN coalesce(to_json(tolerance)->>channel,
                                error('tolerance has no entry for channel ' || channel))
    ELSE to_json(tolerance)->>'$' END;

-- tolerances_us: the tolerance of each channel of channels in microseconds, unchecked (the
-- caller checks each with channel_tolerance), so that it folds to a constant list.
CREATE OR REPLACE MACRO tolerances_us(tolerance, channels) AS
list_transform(channels, lambda channel, n: epoch_us((
    CASE json_type(to_json(tolerance)) WHEN 'ARRAY' THEN to_json(tolerance)->>(n - 1)
                                       WHEN 'OBJECT' THEN to_json(tolerance)->>channel
                                       ELSE to_json(tolerance)->>'$' END)::INTERVAL));

-- largest_tolerance: the largest interval of a tolerance (one interval, a list or a MAP).
-- Unchecked (channel_tolerance's caller checks each), so that it folds to a constant.
CREATE OR REPLACE MACRO largest_tolerance(tolerance) AS
to_microseconds(list_max(list_transform(
    CASE json_type(to_json(tolerance)) WHEN 'ARRAY' THEN to_json(tolerance)->>'$[*]'
                                       WHEN 'OBJECT' THEN to_json(tolerance)->>'$.*'
                                       ELSE [to_json(tolerance)->>'$'] END,
    lambda t: epoch_us(t::INTERVAL))));

-- nearest_frames: for every grid time and every channel of the list (AIA and HMI channels
-- may be mixed), the frame of that channel nearest to the grid time in either direction,
-- across all years; ties go to the earlier frame (equal T_OBS: lowest year, then idx).
-- A frame further than tolerance is a miss: year, idx, T_OBS, offset_s are NULL. tolerance is
-- one interval, a list of one per channel, or a MAP(channel, interval).
-- good_only := true skips frames that frame_quality flags (views/frame_quality.sql): the
-- nearest good frame within tolerance is picked, or none (default false: every frame).
-- Columns: row, time, channel_order (1-based position in channels), instrument, channel,
-- year, idx, T_OBS, offset_s (T_OBS - time in seconds). Ordered by row, channel_order.
-- How: the grid is regular, so the grid rows a frame is within tolerance of follow from its
-- time by arithmetic: each frame is paired with those rows (one or two for a tolerance under
-- half the cadence), the closest frame per (channel, row) is kept (a hash aggregate) and the
-- grid is joined to it (a hash join): no sort, no search per grid time. Integer microseconds
-- throughout, so distances and ties are exact. (Two ASOF joins, the last frame at or before
-- and the first at or after each grid time, give the same rows ~1.5x slower.)
CREATE OR REPLACE MACRO nearest_frames(channels, start, stop, cadence, tolerance, good_only := false) AS TABLE
WITH
listed AS (  -- each channel with its tolerance (one expression: checked below, not re-expanded)
    SELECT c.n AS channel_order, c.channel, channel_tolerance(tolerance, channels, c.channel, c.n) AS tolerance
    FROM unnest(channels) WITH ORDINALITY AS c(channel, n)
),
wanted AS (
    SELECT l.channel_order, l.channel,
           coalesce(p.instrument, error('no channel ' || l.channel || ' in the catalog')) AS instrument
    FROM listed l
    LEFT JOIN (SELECT DISTINCT channel, instrument FROM partitions) p USING (channel)
    WHERE CASE WHEN len(list_distinct(channels)) < len(channels)
               THEN error('channels lists a channel twice: ' || channels::VARCHAR) ELSE true END
      AND checked_interval(l.tolerance, 'tolerance of ' || l.channel, false) IS NOT NULL  -- a filter: always run
),
grid AS (
    SELECT g.n - 1 AS row, g.time, w.channel_order, w.channel, w.instrument
    FROM range(start::TIMESTAMP, checked_stop(start, stop), checked_interval(cadence, 'cadence', true))
         WITH ORDINALITY AS g(time, n)
    CROSS JOIN wanted w
),
bad AS (  -- flagged frames of the channels, only when good_only (else empty: nothing is read)
    SELECT q.instrument, q.year, q.channel, q.idx FROM frame_quality q
    WHERE good_only AND NOT q.good AND list_contains(channels, q.channel)
),
candidates AS (  -- frames that may be within tolerance of the grid; us: T_OBS - start (microseconds)
    SELECT f.channel, f.year, f.idx, f.T_OBS, epoch_us(f.T_OBS) - epoch_us(start::TIMESTAMP) AS us
    FROM frame_times f ANTI JOIN bad USING (instrument, year, channel, idx)
    WHERE list_contains(channels, f.channel)
      AND f.T_OBS >= start::TIMESTAMP - largest_tolerance(tolerance)
      AND f.T_OBS <= stop::TIMESTAMP + largest_tolerance(tolerance)
      AND f.year BETWEEN year(start::TIMESTAMP - largest_tolerance(tolerance)) - frame_year_slack()
                     AND year(stop::TIMESTAMP + largest_tolerance(tolerance)) + frame_year_slack()  -- skips other years' files
),
paired AS (
    -- grid row r is at r * cadence from start; a frame at us is within tolerance of the rows
    -- r with |us - r * cadence| <= tolerance, all among floor(us / cadence) + k for
    -- k = -ceil(tolerance / cadence) .. floor(tolerance / cadence) + 1 (a superset; with one
    -- tolerance per channel, from the largest)
    SELECT c.*, floor(c.us / epoch_us(cadence::INTERVAL))::BIGINT + k.k AS row
    FROM candidates c
    CROSS JOIN range(-ceil(epoch_us(largest_tolerance(tolerance)) / epoch_us(checked_interval(cadence, 'cadence', true)))::BIGINT,
                     floor(epoch_us(largest_tolerance(tolerance)) / epoch_us(checked_interval(cadence, 'cadence', true)))::BIGINT + 2) AS k(k)
),
reach AS (
    -- the pairs within the channel's tolerance, exactly; distance: |us - r * cadence| * 2, plus 1 for a
    -- frame after the grid time, so the smallest is the closest and a tie goes to the earlier
    SELECT p.channel, p.year, p.idx, p.T_OBS, p.row,
           abs(p.us - p.row * epoch_us(cadence::INTERVAL)) * 2
             + (p.us > p.row * epoch_us(cadence::INTERVAL))::INTEGER AS distance
    FROM paired p
    WHERE abs(p.us - p.row * epoch_us(cadence::INTERVAL)) <=
          CASE WHEN list_min(tolerances_us(tolerance, channels)) = list_max(tolerances_us(tolerance, channels))
               THEN list_max(tolerances_us(tolerance, channels))  -- one tolerance: a constant, no lookup per pair
               ELSE tolerances_us(tolerance, channels)[list_position(channels, p.channel)] END
),
best AS (  -- the closest frame per channel and grid row (equal T_OBS: lowest year, then idx)
    SELECT channel, row, arg_min({'year': year, 'idx': idx, 'T_OBS': T_OBS}, (distance, year, idx)) AS frame
    FROM reach
    GROUP BY channel, row
)
SELECT g.row, g.time, g.channel_order, g.instrument, g.channel,
       b.frame.year AS year, b.frame.idx AS idx, b.frame.T_OBS AS T_OBS,
       date_diff('microsecond', g.time, b.frame.T_OBS) / 1e6 AS offset_s
FROM grid g LEFT JOIN best b USING (row, channel)
ORDER BY g.row, g.channel_order;

-- nearest: the frames of one channel on a grid (the seed notebook's argmin loop, without
-- dropping frame 0): one row per grid time, frame columns NULL where no frame is within
-- tolerance (good_only := true: the nearest good frame). Columns: row, time, instrument,
-- channel, year, idx, T_OBS, offset_s.
-- Join aia/hmi/frames USING (year, channel, idx) for more keywords.
CREATE OR REPLACE MACRO nearest(instrument, channel, start, stop, cadence, tolerance, good_only := false) AS TABLE
SELECT n.* EXCLUDE (channel_order)
FROM nearest_frames([channel], start, stop, cadence, tolerance, good_only := good_only) n
WHERE CASE WHEN n.instrument = lower(instrument) THEN true
           ELSE error('channel ' || n.channel || ' belongs to ' || n.instrument || ', not ' || instrument) END
ORDER BY n.row;

-- nearest_eve: the EVE sample nearest to each grid time (ties: the earlier sample), NULL
-- beyond tolerance. Columns: row, time, idx, eve_time, offset_s. Join eve USING (idx).
CREATE OR REPLACE MACRO nearest_eve(start, stop, cadence, tolerance) AS TABLE
WITH
grid AS (
    SELECT g.n - 1 AS row, g.time
    FROM range(start::TIMESTAMP,  -- the arguments are checked once, when the query is bound
               CASE WHEN checked_interval(tolerance, 'tolerance', false) IS NOT NULL THEN checked_stop(start, stop) END,
               checked_interval(cadence, 'cadence', true)) WITH ORDINALITY AS g(time, n)
),
candidates AS (
    SELECT e.idx, e.time AS eve_time,
           date_diff('microsecond', start::TIMESTAMP, e.time) / (epoch(cadence::INTERVAL) * 1e6) AS position
    FROM eve e
    WHERE e.time >= start::TIMESTAMP - tolerance::INTERVAL
      AND e.time <= stop::TIMESTAMP + tolerance::INTERVAL
),
reach AS (
    SELECT c.*,
           unnest(range(floor(c.position - epoch(tolerance::INTERVAL) / epoch(cadence::INTERVAL))::BIGINT,
                        ceil(c.position + epoch(tolerance::INTERVAL) / epoch(cadence::INTERVAL))::BIGINT + 1)) AS row
    FROM candidates c
),
best AS (
    SELECT g.row,
           arg_min({'idx': r.idx, 'eve_time': r.eve_time},
                   (abs(date_diff('microsecond', g.time, r.eve_time)), r.eve_time, r.idx)) AS sample
    FROM reach r JOIN grid g USING (row)
    WHERE abs(date_diff('microsecond', g.time, r.eve_time)) <= epoch(tolerance::INTERVAL) * 1000000
    GROUP BY g.row
)
SELECT g.row, g.time, b.sample.idx AS idx, b.sample.eve_time AS eve_time,
       date_diff('microsecond', g.time, b.sample.eve_time) / 1e6 AS offset_s
FROM grid g LEFT JOIN best b USING (row)
ORDER BY g.row;

-- aligned: one row per grid time with the nearest frame of every listed channel and the
-- nearest EVE sample: multi-instrument ML samples in one query (good_only := true: good frames
-- only). tolerance is one interval, a list of one per channel, or a MAP(channel, interval); EVE
-- uses the MAP's 'eve' entry if it has one, else the largest tolerance.
-- Columns: row, time,
--   frames MAP(VARCHAR, STRUCT(instrument, year, idx, T_OBS, offset_s)) keyed by channel in
--          the order of channels (frames['171A'].idx; a miss has NULL fields),
--   eve_idx, eve_time, eve_offset_s (NULL when no EVE sample is within tolerance).
-- Selection.to_pandas() flattens frames into columns "171A.idx", "171A.year", ...
CREATE OR REPLACE MACRO aligned(channels, start, stop, cadence, tolerance, good_only := false) AS TABLE
WITH
per_time AS (
    SELECT n.row, any_value(n.time) AS time,
           map_from_entries(list({'key': n.channel,
                                  'value': {'instrument': n.instrument, 'year': n.year, 'idx': n.idx,
                                            'T_OBS': n.T_OBS, 'offset_s': n.offset_s}}
                                 ORDER BY n.channel_order)) AS frames
    FROM nearest_frames(channels, start, stop, cadence, tolerance, good_only := good_only) n
    GROUP BY n.row
)
SELECT p.row, p.time, p.frames, e.idx AS eve_idx, e.eve_time, e.offset_s AS eve_offset_s
FROM per_time p LEFT JOIN nearest_eve(start, stop, cadence, coalesce(
    CASE WHEN json_type(to_json(tolerance)) = 'OBJECT' THEN (to_json(tolerance)->>'eve')::INTERVAL END,
    largest_tolerance(tolerance))) e USING (row)
ORDER BY p.row;

-- coverage: frames and gaps per AIA/HMI channel per bucket (INTERVAL '1 day', '1 hour', ...)
-- of [start, stop), to find holes in the data. Every channel of the catalog gets every
-- bucket, so an empty bucket shows as frames = 0.
-- A step is the time between consecutive frames of a channel (start and stop count as
-- frames at the ends); a gap is a step longer than `gap`, counted in the bucket where it
-- starts. Columns: instrument, channel, bucket (TIMESTAMP), frames, gaps,
-- longest_step_s (longest step starting in the bucket, seconds; NULL if none starts there).
CREATE OR REPLACE MACRO coverage(start, stop, bucket, gap) AS TABLE
WITH
channels AS (
    SELECT DISTINCT instrument, channel FROM partitions
),
starts AS (
    SELECT r.bucket FROM range(start::TIMESTAMP, stop::TIMESTAMP, bucket::INTERVAL) AS r(bucket)
),
buckets AS (
    SELECT c.instrument, c.channel, b.bucket FROM channels c CROSS JOIN starts b
),
times AS (
    SELECT f.instrument, f.channel, f.T_OBS AS t
    FROM frame_times f
    WHERE f.T_OBS >= start::TIMESTAMP AND f.T_OBS < stop::TIMESTAMP
      AND f.year BETWEEN year(start::TIMESTAMP) - frame_year_slack() AND year(stop::TIMESTAMP) + frame_year_slack()
),
points AS (
    SELECT instrument, channel, t, true AS is_frame FROM times
    UNION ALL SELECT instrument, channel, start::TIMESTAMP, false FROM channels
    UNION ALL SELECT instrument, channel, stop::TIMESTAMP, false FROM channels
),
steps AS (
    SELECT instrument, channel, t, is_frame,
           lead(t) OVER (PARTITION BY instrument, channel ORDER BY t, is_frame) AS next_t
    FROM points
),
-- the bucket a time falls in is the last start at or before it (time_bucket puts month
-- buckets on the 1st of the month, whatever the day of `start`: none would match a start)
per_bucket AS (
    SELECT s.instrument, s.channel, b.bucket,
           count(*) FILTER (WHERE is_frame) AS frames,
           count(*) FILTER (WHERE epoch(next_t) - epoch(t) > epoch(gap::INTERVAL)) AS gaps,
           max(epoch(next_t) - epoch(t)) AS longest_step_s
    FROM steps s ASOF JOIN starts b ON s.t >= b.bucket
    WHERE s.t < stop::TIMESTAMP
    GROUP BY ALL
)
SELECT b.instrument, b.channel, b.bucket,
       coalesce(p.frames, 0) AS frames, coalesce(p.gaps, 0) AS gaps, p.longest_step_s
FROM buckets b LEFT JOIN per_bucket p USING (instrument, channel, bucket)
ORDER BY b.instrument, b.channel, b.bucket;

-- split_label: the train / val / test split of time t for machine learning, from whole calendar
-- months (sdoml_sql.datasets.splits computes the same labels in Python: ds.split(...)).
-- A month goes to test_months / val_months when either list is given, else by a seeded hash:
-- u = first 8 hex digits of md5('<seed>:<YYYY-MM>') / 2^32; 'test' if u < test, 'val' if
-- u < test + val, else 'train'. NULL (a guard gap) for t less than gap from the start or end of
-- its month when the neighbouring month has another label. Named parameters, e.g.
-- split_label(time, seed := 1, val := 0.2, test := 0.1, gap := INTERVAL 2 days).
CREATE OR REPLACE MACRO month_split(month_start, seed, val, test, val_months, test_months) AS (
    CASE WHEN len(val_months) + len(test_months) > 0 THEN
             CASE WHEN list_contains(test_months, strftime(month_start::TIMESTAMP, '%Y-%m')) THEN 'test'
                  WHEN list_contains(val_months, strftime(month_start::TIMESTAMP, '%Y-%m')) THEN 'val'
                  ELSE 'train' END
         WHEN ('0x' || md5(seed::VARCHAR || ':' || strftime(month_start::TIMESTAMP, '%Y-%m'))[1:8])::UBIGINT
              / 4294967296.0 < test THEN 'test'
         WHEN ('0x' || md5(seed::VARCHAR || ':' || strftime(month_start::TIMESTAMP, '%Y-%m'))[1:8])::UBIGINT
              / 4294967296.0 < test + val THEN 'val'
         ELSE 'train' END
);
CREATE OR REPLACE MACRO split_label(t, seed := 0, val := 0.1, test := 0.1, gap := INTERVAL 1 day,
                                    val_months := []::VARCHAR[], test_months := []::VARCHAR[]) AS (
    CASE WHEN (t::TIMESTAMP - date_trunc('month', t::TIMESTAMP) < gap::INTERVAL
               AND month_split(date_trunc('month', t::TIMESTAMP) - INTERVAL 1 month, seed, val, test, val_months, test_months)
                   <> month_split(date_trunc('month', t::TIMESTAMP), seed, val, test, val_months, test_months))
           OR (date_trunc('month', t::TIMESTAMP) + INTERVAL 1 month - t::TIMESTAMP < gap::INTERVAL
               AND month_split(date_trunc('month', t::TIMESTAMP) + INTERVAL 1 month, seed, val, test, val_months, test_months)
                   <> month_split(date_trunc('month', t::TIMESTAMP), seed, val, test, val_months, test_months))
         THEN NULL
         ELSE month_split(date_trunc('month', t::TIMESTAMP), seed, val, test, val_months, test_months) END
);
