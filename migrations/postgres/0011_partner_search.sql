-- The partner search (`q` of GET /partners) matched `name ILIKE $2 OR code ILIKE $2`. In a UTF-8 database ILIKE is
-- `lower(text) LIKE lower(pattern)`: it lowercases every name and code it looks at, on every search, and that was
-- most of the search's time (Postgres's towlower and UTF-8 conversions were a tenth of its CPU under the realistic
-- workload of 28 Nov). The lowercased texts are now kept with the row, so a search lowercases only its pattern:
-- `name_lower LIKE lower($2) OR code_lower LIKE lower($2)` selects exactly what the ILIKE did. Over the 4,011
-- partners of the medium data, 300 searches took 1,064 ms with ILIKE and 252 ms against the kept lowercase.
ALTER TABLE partners
    ADD COLUMN name_lower text GENERATED ALWAYS AS (lower(name)) STORED,
    ADD COLUMN code_lower text GENERATED ALWAYS AS (lower(code)) STORED;

-- The trigram indexes served the ILIKE through a custom plan for each pattern. ingest-api's sessions now run generic
-- plans (`kerp_ingest::session_settings`), where the filter `($2 IS NULL OR …)` cannot use them, and a company's
-- partners are read through partners_company_idx and filtered; every search is linear in the company's partners.
-- An index no query uses only slows every partner write.
DROP INDEX IF EXISTS partners_name_trgm_idx;
DROP INDEX IF EXISTS partners_code_trgm_idx;
