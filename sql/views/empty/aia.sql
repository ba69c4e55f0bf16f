-- aia when the catalog has no AIA data: an empty view with the locator and time columns.
CREATE OR REPLACE VIEW aia AS
SELECT NULL::BIGINT AS idx, NULL::TIMESTAMP AS T_OBS, NULL::VARCHAR AS T_OBS_STR,
       NULL::INTEGER AS year, NULL::VARCHAR AS channel
WHERE false;
