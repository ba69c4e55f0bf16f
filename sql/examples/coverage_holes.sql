-- Holes in the data: hours of 2010-08-27 where a channel has no frame or a gap over 30 minutes.
SELECT instrument, channel, bucket, frames, gaps, longest_step_s
FROM coverage('2010-08-27', '2010-08-28', INTERVAL 1 hour, INTERVAL 30 minutes)
WHERE frames = 0 OR gaps > 0
ORDER BY instrument, channel, bucket;
