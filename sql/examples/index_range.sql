-- An index range: frames 100-124 of the 2010 171A array, in storage order (the seed's
-- root["2010"]["171A"][100:125]).
SELECT year, channel, idx, T_OBS, "DATE-OBS", WAVELNTH
FROM aia
WHERE year = 2010 AND channel = '171A' AND idx BETWEEN 100 AND 124
ORDER BY idx;
