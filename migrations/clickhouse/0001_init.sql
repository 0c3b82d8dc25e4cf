-- K-ERP ClickHouse aggregates, written only by stream-workers and read by query-api.
-- Every statement is idempotent (IF NOT EXISTS) and runs on ClickHouse 18.16 as well as current releases.
-- stream-workers splits this file on semicolons and runs the statements in order at start-up.

-- One row per posted voucher line, ordered for the account-ledger query. A replayed batch writes the same key again;
-- ReplacingMergeTree collapses it on merge and readers use FINAL, so a line is never seen twice.
CREATE TABLE IF NOT EXISTS ledger_lines (
    company_id     UUID,
    account_id     UUID,
    voucher_date   Date,
    voucher_number String,
    line_no        UInt32,
    voucher_id     UUID,
    voucher_type   String,
    partner_id     UUID,
    debit          Int64,
    credit         Int64,
    description    String,
    company_seq    Int64,
    posted_at      DateTime
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(voucher_date)
ORDER BY (company_id, account_id, voucher_date, voucher_number, line_no);

-- Debit and credit totals per company, account and month (period = first day of the month).
-- The rows with account_id = 00000000-0000-0000-0000-000000000000 and period = 1970-01-01 are the fold's
-- per-company watermark: their summed debit is the highest company_seq folded so far. They are written in the same
-- INSERT as the balance deltas they cover, and this table has no PARTITION BY, so each INSERT is one part: the deltas
-- and the watermark land together or not at all. See docs/exactly-once.md.
CREATE TABLE IF NOT EXISTS period_balances (
    company_id UUID,
    account_id UUID,
    period     Date,
    debit      Int64,
    credit     Int64
) ENGINE = SummingMergeTree((debit, credit))
ORDER BY (company_id, account_id, period);

-- Account names and classes as the events carried them, so reports need nothing but ClickHouse.
CREATE TABLE IF NOT EXISTS accounts (
    company_id   UUID,
    account_id   UUID,
    code         String,
    name         String,
    account_type String,
    version      UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (company_id, account_id);

-- Messages the fold could not use (undecodable, unknown schema, impossible content), kept whole so nothing is lost.
CREATE TABLE IF NOT EXISTS dead_letters (
    topic       String,
    partition   Int32,
    offset      Int64,
    error       String,
    payload_hex String,
    received_at DateTime
) ENGINE = MergeTree
ORDER BY (topic, partition, offset);
