-- Balance snapshots: per company, account and month, the sums of `period_balances` over every event up to a
-- sequence the company's watermark had reached (`upto_seq`). Reports read the newest snapshot plus the few
-- `period_balances` rows above it, instead of collapsing (FINAL) every row the company ever posted: at the `large`
-- size that is about 4,800 summed rows and a short tail in place of 96,000 rows per trial balance.
--
-- A snapshot is computed inside ClickHouse by one INSERT … SELECT that reads the watermark and the rows in the same
-- statement (stream-workers, `snapshot.rs`), so it is exact for its `upto_seq`: the watermark never claims an event
-- whose rows are not durable. Computing the same snapshot twice (two workers, a retry) writes equal rows; readers
-- take one per (account, month). Sums are Decimal128, as reports sum, so no total can overflow.
--
-- Old snapshots are dropped by the hour (the partition) once newer ones exist; the partition holding a company's
-- newest snapshot is never dropped, so a reader that has just looked up `upto_seq` still finds its rows.
CREATE TABLE IF NOT EXISTS balance_snapshots{v} (
    company_id UUID,
    upto_seq   Int64,
    account_id UUID,
    period     Date,
    debit      Decimal128(0),
    credit     Decimal128(0),
    -- The lines summed, for the ledger's monthly totals; 0 when any row summed was written before period_balances
    -- counted lines (readers then count ledger_lines instead).
    line_count UInt64,
    created_at DateTime
) ENGINE = ReplacingMergeTree
PARTITION BY intDiv(toUInt32(created_at), 3600)
ORDER BY (company_id, upto_seq, account_id, period)
-- A report reads one snapshot of one company, a few thousand rows at most: small granules keep it from reading 8,192.
SETTINGS index_granularity = 1024;
