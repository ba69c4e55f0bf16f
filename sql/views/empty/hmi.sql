-- hmi when the catalog has no HMI data: an empty view with the locator and time columns.
CREATE OR REPLACE VIEW hmi AS
SELECT NULL::BIGINT AS idx, NULL::TIMESTAMP AS T_OBS, NULL::VARCHAR AS T_OBS_STR,
       NULL::INTEGER AS year, NULL::VARCHAR AS channel
WHERE false;
