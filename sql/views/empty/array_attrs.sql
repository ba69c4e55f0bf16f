-- array_attrs when no array has ragged keys: empty.
CREATE OR REPLACE VIEW array_attrs AS
SELECT NULL::VARCHAR AS key, NULL::BIGINT AS n_values, NULL::VARCHAR AS "values",
       NULL::VARCHAR AS instrument, NULL::INTEGER AS year, NULL::VARCHAR AS channel
WHERE false;
