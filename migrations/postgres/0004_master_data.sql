-- Master data beyond the seeded chart: partners get the fields of a tax invoice party and a fast name search,
-- departments arrive (and voucher lines may name one), users can be switched off, and a company may start its fiscal
-- year in another month than January. Constraint and index names are stable: ingest-api maps them to 409/422.

-- Trigram indexes make `q=` (a part of a name or code, often Korean) an index search at 10,000 partners a company.
-- pg_trgm is a trusted extension (PostgreSQL 13+), so the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

ALTER TABLE companies ADD COLUMN fiscal_start_month smallint NOT NULL DEFAULT 1
    CONSTRAINT companies_fiscal_start_month_check CHECK (fiscal_start_month BETWEEN 1 AND 12);

ALTER TABLE partners
    ADD COLUMN representative text NOT NULL DEFAULT '',
    ADD COLUMN address        text NOT NULL DEFAULT '',
    ADD COLUMN created_at     timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN updated_at     timestamptz NOT NULL DEFAULT now();
-- One partner per business number in a company; partners without one (individuals, foreign companies) are many.
CREATE UNIQUE INDEX partners_company_business_number_key ON partners (company_id, business_number)
    WHERE business_number IS NOT NULL;
CREATE INDEX partners_name_trgm_idx ON partners USING gin (name gin_trgm_ops);
CREATE INDEX partners_code_trgm_idx ON partners USING gin (code gin_trgm_ops);

CREATE TABLE departments (
    id         uuid PRIMARY KEY,
    company_id uuid NOT NULL REFERENCES companies (id),
    code       text NOT NULL,
    name       text NOT NULL,
    is_active  boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT departments_company_code_key UNIQUE (company_id, code),
    -- The target of the composite key from voucher lines, as for accounts and partners (0003_security.sql).
    CONSTRAINT departments_company_id_key UNIQUE (company_id, id)
);

ALTER TABLE voucher_lines ADD COLUMN department_id uuid;
ALTER TABLE voucher_lines ADD CONSTRAINT voucher_lines_company_department_fkey
    FOREIGN KEY (company_id, department_id) REFERENCES departments (company_id, id);

ALTER TABLE accounts ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

ALTER TABLE users ADD COLUMN is_active boolean NOT NULL DEFAULT true;
CREATE INDEX users_company_idx ON users (company_id);
