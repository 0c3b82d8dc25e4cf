-- K-ERP ClickHouse tables, written only by stream-workers and read by query-api.
-- Every statement is idempotent (IF NOT EXISTS) and runs on ClickHouse 18.16 as well as current releases.
-- stream-workers splits this file on semicolons and runs the statements in order at start-up. `{v}` is the version
-- suffix of the aggregate tables: empty for the live tables, `__rebuild` while `stream-workers rebuild` folds the
-- topic into a new version beside them (see docs/exactly-once.md).
--
-- Exactly-once rests on one rule: every aggregate row is a function of a single event and carries that event's
-- (company_id, company_seq) in its sorting key, in a ReplacingMergeTree. Writing an event twice, from one worker or
-- from two, therefore writes rows that collapse into one, and readers use FINAL so they never see both copies.

-- One row per posted voucher line, ordered for the account-ledger query. partner_id and department_id are the nil UUID
-- when the line has none. (department_id came later: `sink::migrate` adds it to tables created before it.)
CREATE TABLE IF NOT EXISTS ledger_lines{v} (
    company_id     UUID,
    account_id     UUID,
    voucher_date   Date,
    voucher_number String,
    line_no        UInt32,
    voucher_id     UUID,
    voucher_type   String,
    partner_id     UUID,
    department_id  UUID,
    debit          Int64,
    credit         Int64,
    description    String,
    company_seq    Int64,
    posted_at      DateTime
) ENGINE = ReplacingMergeTree
-- By year, not by month: a year of one account's ledger then reads the few parts of one partition rather than three
-- or four parts in each of twelve (measured at `large`: about 45 parts per ledger read, each with its own index
-- lookup and granule reads, the larger part of a ledger page's CPU). Merges work within a partition, so fewer, larger
-- partitions also leave fewer parts behind the fold's small inserts.
PARTITION BY toYear(voucher_date)
ORDER BY (company_id, account_id, voucher_date, voucher_number, line_no)
-- A ledger read names one account of one company, often a few hundred lines: with the default 8,192-row granules it
-- read at least 8,192 rows from every part it touched (measured: ~100 ms of CPU per ledger page at the `large` size).
-- Smaller granules cut that eightfold for a slightly larger primary index. Tables made before this keep 8,192 until
-- `stream-workers rebuild` recreates them.
SETTINGS index_granularity = 1024;

-- One event's debit and credit on one account in its month (period = first day of the month). Sums over events are
-- taken at read time, after FINAL has collapsed copies, and in Decimal128, so no total can overflow.
CREATE TABLE IF NOT EXISTS period_balances{v} (
    company_id  UUID,
    account_id  UUID,
    period      Date,
    company_seq Int64,
    debit       Int64,
    credit      Int64,
    -- The event's lines on the account (at least 1; 0 in rows written before this column: not counted).
    line_count  UInt32
) ENGINE = ReplacingMergeTree
-- Sequence second: readers add the events a company's newest balance snapshot does not cover yet (`company_seq >
-- upto_seq`, see 0004_snapshots.sql), and this order lets the primary key find that short tail instead of scanning
-- the company's every row. The key's columns, and so what collapses, are the same as before.
ORDER BY (company_id, company_seq, account_id, period)
-- As for ledger_lines: an account's opening balance reads a few rows, not a whole 8,192-row granule per part.
SETTINGS index_granularity = 1024;

-- Account names and classes as the events carried them, so reports need nothing but ClickHouse.
CREATE TABLE IF NOT EXISTS accounts{v} (
    company_id   UUID,
    account_id   UUID,
    code         String,
    name         String,
    account_type String,
    version      UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (company_id, account_id);

-- Bookkeeping, apart from the business rows: each company's highest sequence folded with nothing missing below it,
-- and the partition its events are on. Written after the rows it covers; the highest value per company counts.
CREATE TABLE IF NOT EXISTS fold_watermarks{v} (
    company_id UUID,
    partition  Int32,
    seq        Int64
) ENGINE = ReplacingMergeTree(seq)
ORDER BY company_id;

-- Messages the fold could not use (undecodable, unknown schema, a sequence gap, impossible content), kept whole.
-- Their company is held back until a reader that understands them is deployed or an operator skips them.
CREATE TABLE IF NOT EXISTS dead_letters (
    topic       String,
    partition   Int32,
    offset      Int64,
    error       String,
    payload_hex String,
    received_at DateTime
) ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset);

-- The audit record of operator skips (`stream-workers skip`): a message, or a company's missing sequence number,
-- that the fold was told to pass over, with who decided it and why.
CREATE TABLE IF NOT EXISTS fold_skips (
    topic       String,
    kind        String,
    partition   Int32,
    offset      Int64,
    company_id  UUID,
    seq         Int64,
    reason      String,
    operator    String,
    created_at  DateTime
) ENGINE = MergeTree
ORDER BY (topic, created_at)
