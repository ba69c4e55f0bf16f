-- Short exposures: 171A frames exposed under 2 s on 2010-08-27 and 28 (the seed's np.where).
SELECT year, channel, idx, T_OBS, EXPTIME
FROM aia
WHERE channel = '171A' AND EXPTIME < 2.0
  AND T_OBS BETWEEN '2010-08-27' AND '2010-08-29'
ORDER BY T_OBS;
