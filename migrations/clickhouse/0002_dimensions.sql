-- Master data as the events carried it, so reports show current names and settings with no Postgres read. Each is a
-- ReplacingMergeTree on the change's version (its time in microseconds): the newest change of a row wins, and folding
-- the same event twice writes the same row again. Readers use FINAL or argMax(.., version).

-- Company-wide settings that reports need: the month the fiscal year starts in (1 = January).
CREATE TABLE IF NOT EXISTS company_settings{v} (
    company_id         UUID,
    name               String,
    fiscal_start_month UInt8,
    version            UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY company_id;

-- Partners (거래처) for the partner ledger.
CREATE TABLE IF NOT EXISTS partners{v} (
    company_id      UUID,
    partner_id      UUID,
    code            String,
    name            String,
    business_number String,
    partner_type    String,
    is_active       UInt8,
    version         UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (company_id, partner_id);

-- Departments, for reports filtered by department.
CREATE TABLE IF NOT EXISTS departments{v} (
    company_id    UUID,
    department_id UUID,
    code          String,
    name          String,
    is_active     UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (company_id, department_id)
