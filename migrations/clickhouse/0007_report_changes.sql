-- Bookkeeping, apart from the business rows: a count per company of the changes to what its reports read that move
-- no fold watermark. A folded voucher moves its company's watermark (`fold_watermarks`); what else changes a report is
-- counted here: master data and invoices folded without a sequence, a rewritten balance snapshot, and (under the nil
-- company id, for every company) a rebuild's swap. query-api polls the watermarks and these counts together, and
-- keeps a report's answer only while neither moved (`query-api/src/answers.rs`).
--
-- Each change is one row of 1; the count is their sum, which merges keep (SummingMergeTree), so it only ever grows
-- and needs no clock. Not versioned: a rebuild's swap leaves it in place, and the swap itself is counted in it.
CREATE TABLE IF NOT EXISTS report_changes (
    company_id UUID,
    changes    UInt64
) ENGINE = SummingMergeTree(changes)
ORDER BY company_id;
