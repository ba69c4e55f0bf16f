-- eve when the catalog has no EVE data: an empty view with the index and time columns.
CREATE OR REPLACE VIEW eve AS
SELECT NULL::BIGINT AS idx, NULL::TIMESTAMP AS time, NULL::VARCHAR AS "group"
WHERE false;
