-- One day at 12 minutes: the 171A frame nearest each grid time within 6 minutes (the seed's
-- argmin loop, without dropping frame 0); EXPTIME joined from the aia view.
SELECT n.row, n.time, n.year, n.channel, n.idx, n.T_OBS, n.offset_s, a.EXPTIME
FROM nearest('aia', '171A', '2010-08-27', '2010-08-28', INTERVAL 12 minutes, INTERVAL 6 minutes) n
LEFT JOIN aia a USING (year, channel, idx)
ORDER BY n.row;
