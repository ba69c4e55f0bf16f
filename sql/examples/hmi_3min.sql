-- HMI Bz on a 12-minute grid, frames further than 3 minutes marked missing (idx NULL).
SELECT row, time, instrument, year, channel, idx, T_OBS, offset_s
FROM nearest('hmi', 'Bz', '2010-08-27', '2010-08-28', INTERVAL 12 minutes, INTERVAL 3 minutes)
ORDER BY row;
