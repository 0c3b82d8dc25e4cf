-- Tenancy in depth: a voucher line may name only its own company's accounts and partners. ingest-api already resolves
-- every reference inside the token's company; these keys make the database refuse a cross-tenant line even if that
-- code is wrong. Constraint names are stable: ingest-api maps them to 422 responses.

-- The composite keys the foreign keys below point at. `id` alone is unique already, so these cannot fail.
ALTER TABLE accounts ADD CONSTRAINT accounts_company_id_key UNIQUE (company_id, id);
ALTER TABLE partners ADD CONSTRAINT partners_company_id_key UNIQUE (company_id, id);

ALTER TABLE voucher_lines ADD CONSTRAINT voucher_lines_company_account_fkey
    FOREIGN KEY (company_id, account_id) REFERENCES accounts (company_id, id);
-- A line without a partner (NULL partner_id) is not checked: MATCH SIMPLE skips keys with a NULL column.
ALTER TABLE voucher_lines ADD CONSTRAINT voucher_lines_company_partner_fkey
    FOREIGN KEY (company_id, partner_id) REFERENCES partners (company_id, id);

-- The single-column keys are implied by the composite ones; dropping them spares every posted line two more lookups.
ALTER TABLE voucher_lines DROP CONSTRAINT voucher_lines_account_id_fkey;
ALTER TABLE voucher_lines DROP CONSTRAINT voucher_lines_partner_id_fkey;
