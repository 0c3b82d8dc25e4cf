-- Each voucher records the per-company event sequence its VoucherPosted event carries, so that a gap or a difference
-- found in ClickHouse can be named against the source of truth (`stream-workers reconcile`).
ALTER TABLE vouchers ADD COLUMN company_seq bigint;

-- Vouchers posted before this column existed: their sequence was taken in the posting transaction, under the company
-- row lock and before `created_at` was read, so creation order is sequence order. Account events take no sequence.
UPDATE vouchers v SET company_seq = n.seq
FROM (SELECT id, row_number() OVER (PARTITION BY company_id ORDER BY created_at, id) AS seq FROM vouchers) n
WHERE v.id = n.id;

ALTER TABLE vouchers ALTER COLUMN company_seq SET NOT NULL;
ALTER TABLE vouchers ADD CONSTRAINT vouchers_company_seq_key UNIQUE (company_id, company_seq);

-- A posting writes its lines before it takes the company row lock that hands out the sequence, and the voucher row
-- (which carries the sequence) after it, so the lock is held for as short a time as possible. The lines therefore
-- point at their voucher before it exists; the check waits for the commit.
ALTER TABLE voucher_lines ALTER CONSTRAINT voucher_lines_voucher_id_fkey DEFERRABLE INITIALLY DEFERRED;
