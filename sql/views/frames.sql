-- frames: AIA and HMI frames together, with an instrument column ('aia' or 'hmi') and the
-- columns the two have in common ({frames_columns} is filled in when the catalog is opened).
CREATE OR REPLACE VIEW frames AS
SELECT 'aia' AS instrument, {frames_columns} FROM aia
UNION ALL BY NAME
SELECT 'hmi' AS instrument, {frames_columns} FROM hmi;
