-- The voucher lifecycle (draft → approved → reversed), closed periods and idempotency keys.
--
-- A draft has neither a number nor an event sequence: both are given at approval, so numbers stay gapless and only
-- approved vouchers (and reversals, which are approved vouchers) become events and reach the reports. A reversed
-- voucher keeps its number, its sequence and its place in the reports; the reversal nets it.

ALTER TABLE vouchers DROP CONSTRAINT vouchers_status_check;
ALTER TABLE vouchers ADD CONSTRAINT vouchers_status_check CHECK (status IN ('draft', 'approved', 'reversed'));
ALTER TABLE vouchers ALTER COLUMN voucher_number DROP NOT NULL;
ALTER TABLE vouchers ALTER COLUMN company_seq DROP NOT NULL;
-- Exactly the drafts lack a number and a sequence.
ALTER TABLE vouchers ADD CONSTRAINT vouchers_draft_unnumbered
    CHECK ((status = 'draft') = (voucher_number IS NULL) AND (status = 'draft') = (company_seq IS NULL));

ALTER TABLE vouchers
    ADD COLUMN reversal_of uuid,
    ADD COLUMN reason      text NOT NULL DEFAULT '',
    ADD COLUMN approved_at timestamptz,
    ADD COLUMN approved_by uuid,
    ADD COLUMN updated_at  timestamptz NOT NULL DEFAULT now();
ALTER TABLE vouchers ADD CONSTRAINT vouchers_company_id_key UNIQUE (company_id, id);
-- A reversal names a voucher of its own company, and a voucher is reversed at most once.
ALTER TABLE vouchers ADD CONSTRAINT vouchers_reversal_of_fkey
    FOREIGN KEY (company_id, reversal_of) REFERENCES vouchers (company_id, id);
CREATE UNIQUE INDEX vouchers_reversal_of_key ON vouchers (reversal_of) WHERE reversal_of IS NOT NULL;
UPDATE vouchers SET approved_at = created_at, approved_by = created_by WHERE status = 'approved';

-- A closed month (period = its first day) refuses postings, approvals and reversals dated inside it. Closing takes the
-- month's voucher counter row, which every posting into the month also takes, so a close and a posting never cross.
CREATE TABLE closed_periods (
    company_id uuid NOT NULL REFERENCES companies (id),
    period     date NOT NULL CONSTRAINT closed_periods_first_day CHECK (extract(day FROM period) = 1),
    closed_at  timestamptz NOT NULL DEFAULT now(),
    closed_by  uuid NOT NULL,
    PRIMARY KEY (company_id, period)
);

-- Idempotency keys, per company. The row is written in the same transaction as what the request creates, so a key
-- names either nothing or the one object with its stored answer; a concurrent retry waits on the row and then replays.
CREATE TABLE idempotency_keys (
    company_id   uuid NOT NULL REFERENCES companies (id),
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    status       smallint NOT NULL,
    body         jsonb NOT NULL,
    location     text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
