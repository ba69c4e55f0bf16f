-- hmi: one row per HMI frame (channel = Bx, By or Bz); T_OBS is converted from TAI to UTC,
-- the original TAI string is in T_OBS_STR. The scan: as for aia (query/scans.py).
CREATE OR REPLACE VIEW hmi AS
{hmi_scan};
