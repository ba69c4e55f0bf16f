-- eve_lines when the catalog has no EVE data: empty.
CREATE OR REPLACE VIEW eve_lines AS
SELECT NULL::VARCHAR AS name, NULL::VARCHAR AS ion, NULL::DOUBLE AS wavelength,
       NULL::DOUBLE AS logT, NULL::VARCHAR AS attrs, NULL::VARCHAR AS "group"
WHERE false;
