-- Multi-instrument ML samples: every 12 minutes, the nearest 171A, 193A and HMI Bz frames
-- and EVE sample within 6 minutes, one row per grid time.
SELECT row, time,
       frames['171A'].idx AS idx_171, frames['193A'].idx AS idx_193, frames['Bz'].idx AS idx_bz,
       eve_idx
FROM aligned(['171A', '193A', 'Bz'], '2010-08-27', '2010-08-28', INTERVAL 12 minutes, INTERVAL 6 minutes)
ORDER BY row;
