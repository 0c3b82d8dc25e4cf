-- K-ERP's ClickHouse tables on the two-shard cluster `kerp` of the `scale` profile (compose/compose.yaml), for
-- ClickHouse 25.8. The one-server tables are migrations/clickhouse/*.sql; this file has the same columns and sorting
-- keys, split in two layers:
--
--   <table>_local  ReplicatedReplacingMergeTree on every server: a shard's rows, the same on both of its replicas;
--   <table>        Distributed over <table>_local, sharded by cityHash64(company_id): what stream-workers writes and
--                  query-api reads, under the names they already use.
--
-- Because a Distributed table takes the live name first, stream-workers' own `CREATE TABLE IF NOT EXISTS <table>` finds
-- it and does nothing, and its INSERTs and query-api's SELECTs go through the Distributed table unchanged.
--
-- Exactly-once still rests on row identity (docs/exactly-once.md): every row is a function of one event and carries its
-- key, and all copies of a key must meet in one server's parts for FINAL to collapse them. The sharding key is a
-- function of company_id alone, which is the first column of every sorting key, so every copy of a row lands on the
-- same shard, and replication puts the same parts on both replicas. A company's whole data (its lines, balances,
-- dimensions and watermark) is on one shard, so a report reads one shard and FINAL never has to look across shards.
--
-- The Keeper path uses {uuid}: ON CLUSTER gives the table the same UUID on every server, so the two replicas of a shard
-- meet under one path, and a table created again under the same name (as `stream-workers rebuild` does with its
-- `__rebuild` tables, then swaps them in by RENAME) never collides with the path of the table it replaces.
--
-- ch-cluster-init runs this file once with clickhouse-client against ch-s1r1; ON CLUSTER carries each statement to the
-- four servers. Every statement is idempotent. It was written and checked by reading only: see docs/scaling.md.

CREATE DATABASE IF NOT EXISTS kerp ON CLUSTER kerp;

-- One row per posted voucher line (migrations/clickhouse/0001_init.sql).
CREATE TABLE IF NOT EXISTS kerp.ledger_lines_local ON CLUSTER kerp (
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
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')
PARTITION BY toYear(voucher_date)
ORDER BY (company_id, account_id, voucher_date, voucher_number, line_no);

CREATE TABLE IF NOT EXISTS kerp.ledger_lines ON CLUSTER kerp AS kerp.ledger_lines_local
ENGINE = Distributed(kerp, kerp, ledger_lines_local, cityHash64(company_id));

-- One event's debit and credit on one account in its month.
CREATE TABLE IF NOT EXISTS kerp.period_balances_local ON CLUSTER kerp (
    company_id  UUID,
    account_id  UUID,
    period      Date,
    company_seq Int64,
    debit       Int64,
    credit      Int64,
    line_count  UInt32
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')
ORDER BY (company_id, company_seq, account_id, period);

CREATE TABLE IF NOT EXISTS kerp.period_balances ON CLUSTER kerp AS kerp.period_balances_local
ENGINE = Distributed(kerp, kerp, period_balances_local, cityHash64(company_id));

-- Per company, account and month, the balance sums up to a sequence the watermark reached (see
-- migrations/clickhouse/0004_snapshots.sql). Sharded like the rows it sums, so each snapshot's INSERT … SELECT and
-- each report's read stay on one shard.
CREATE TABLE IF NOT EXISTS kerp.balance_snapshots_local ON CLUSTER kerp (
    company_id UUID,
    upto_seq   Int64,
    account_id UUID,
    period     Date,
    debit      Decimal128(0),
    credit     Decimal128(0),
    line_count UInt64,
    created_at DateTime
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')
PARTITION BY intDiv(toUInt32(created_at), 3600)
ORDER BY (company_id, upto_seq, account_id, period);

CREATE TABLE IF NOT EXISTS kerp.balance_snapshots ON CLUSTER kerp AS kerp.balance_snapshots_local
ENGINE = Distributed(kerp, kerp, balance_snapshots_local, cityHash64(company_id));

-- A row per snapshot, what reports look the newest one up in (migrations/clickhouse/0005_snapshot_heads.sql); on the
-- shard of the snapshot it names.
CREATE TABLE IF NOT EXISTS kerp.snapshot_heads_local ON CLUSTER kerp (
    company_id UUID,
    upto_seq   Int64,
    created_at DateTime
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')
PARTITION BY intDiv(toUInt32(created_at), 3600)
ORDER BY (company_id, upto_seq);

CREATE TABLE IF NOT EXISTS kerp.snapshot_heads ON CLUSTER kerp AS kerp.snapshot_heads_local
ENGINE = Distributed(kerp, kerp, snapshot_heads_local, cityHash64(company_id));

-- Account names and classes; the newest version wins.
CREATE TABLE IF NOT EXISTS kerp.accounts_local ON CLUSTER kerp (
    company_id   UUID,
    account_id   UUID,
    code         String,
    name         String,
    account_type String,
    version      UInt64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}', version)
ORDER BY (company_id, account_id);

CREATE TABLE IF NOT EXISTS kerp.accounts ON CLUSTER kerp AS kerp.accounts_local
ENGINE = Distributed(kerp, kerp, accounts_local, cityHash64(company_id));

-- Each company's highest sequence folded with nothing missing below it. Sharded like the rows it covers, so a company's
-- watermark and its rows are on the same shard and replicate through the same quorum.
CREATE TABLE IF NOT EXISTS kerp.fold_watermarks_local ON CLUSTER kerp (
    company_id UUID,
    partition  Int32,
    seq        Int64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}', seq)
ORDER BY company_id;

CREATE TABLE IF NOT EXISTS kerp.fold_watermarks ON CLUSTER kerp AS kerp.fold_watermarks_local
ENGINE = Distributed(kerp, kerp, fold_watermarks_local, cityHash64(company_id));

-- Messages the fold could not use. They have no company of their own (an undecodable message may name none), so they
-- are sharded by their Kafka position, which is also their sorting key: a message recorded twice meets its copy on one
-- shard and collapses there.
CREATE TABLE IF NOT EXISTS kerp.dead_letters_local ON CLUSTER kerp (
    topic       String,
    partition   Int32,
    offset      Int64,
    error       String,
    payload_hex String,
    received_at DateTime
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')
ORDER BY (topic, partition, offset);

CREATE TABLE IF NOT EXISTS kerp.dead_letters ON CLUSTER kerp AS kerp.dead_letters_local
ENGINE = Distributed(kerp, kerp, dead_letters_local, cityHash64(topic, `partition`, `offset`));

-- The audit record of operator skips: an append-only log, read whole, so any deterministic key will do.
CREATE TABLE IF NOT EXISTS kerp.fold_skips_local ON CLUSTER kerp (
    topic       String,
    kind        String,
    partition   Int32,
    offset      Int64,
    company_id  UUID,
    seq         Int64,
    reason      String,
    operator    String,
    created_at  DateTime
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')
ORDER BY (topic, created_at);

CREATE TABLE IF NOT EXISTS kerp.fold_skips ON CLUSTER kerp AS kerp.fold_skips_local
ENGINE = Distributed(kerp, kerp, fold_skips_local, cityHash64(company_id));

-- Master data (migrations/clickhouse/0002_dimensions.sql); the newest version wins.
CREATE TABLE IF NOT EXISTS kerp.company_settings_local ON CLUSTER kerp (
    company_id         UUID,
    name               String,
    fiscal_start_month UInt8,
    version            UInt64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}', version)
ORDER BY company_id;

CREATE TABLE IF NOT EXISTS kerp.company_settings ON CLUSTER kerp AS kerp.company_settings_local
ENGINE = Distributed(kerp, kerp, company_settings_local, cityHash64(company_id));

CREATE TABLE IF NOT EXISTS kerp.partners_local ON CLUSTER kerp (
    company_id      UUID,
    partner_id      UUID,
    code            String,
    name            String,
    business_number String,
    partner_type    String,
    is_active       UInt8,
    version         UInt64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}', version)
ORDER BY (company_id, partner_id);

CREATE TABLE IF NOT EXISTS kerp.partners ON CLUSTER kerp AS kerp.partners_local
ENGINE = Distributed(kerp, kerp, partners_local, cityHash64(company_id));

CREATE TABLE IF NOT EXISTS kerp.departments_local ON CLUSTER kerp (
    company_id    UUID,
    department_id UUID,
    code          String,
    name          String,
    is_active     UInt8,
    version       UInt64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}', version)
ORDER BY (company_id, department_id);

CREATE TABLE IF NOT EXISTS kerp.departments ON CLUSTER kerp AS kerp.departments_local
ENGINE = Distributed(kerp, kerp, departments_local, cityHash64(company_id));

-- Tax invoices (migrations/clickhouse/0003_invoices.sql); each event is an invoice's whole state, the newest wins.
CREATE TABLE IF NOT EXISTS kerp.invoices_local ON CLUSTER kerp (
    company_id      UUID,
    invoice_id      UUID,
    invoice_type    String,
    vat_type        String,
    partner_id      UUID,
    invoice_date    Date,
    supply_amount   Int64,
    tax_amount      Int64,
    status          String,
    approval_number String,
    voucher_id      UUID,
    version         UInt64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}', version)
ORDER BY (company_id, invoice_id);

CREATE TABLE IF NOT EXISTS kerp.invoices ON CLUSTER kerp AS kerp.invoices_local
ENGINE = Distributed(kerp, kerp, invoices_local, cityHash64(company_id));
