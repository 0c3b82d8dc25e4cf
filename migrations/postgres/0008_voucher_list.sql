-- The voucher list pages by a keyset cursor instead of OFFSET (ingest-api `store::vouchers::list_vouchers`).
--
-- Its order is date, then number with drafts (no number yet) last in their day, then creation time, then id, which
-- makes the order total. A row comparison `(…) > (…)` cannot step over a NULL number, so the key spells "NULLS LAST"
-- as two columns: `voucher_number IS NULL` (false sorts first) and the number with NULL read as ''. This index holds
-- exactly that key after the company, so a cursor page is one index range scan from the cursor, whatever its depth.
-- `INCLUDE (voucher_number)` lets Postgres read the key from the index alone (it does not recompute the expressions
-- from their stored values), so an old-style page/page_size page skips its OFFSET in an index-only scan.
--
-- It replaces `vouchers_company_date_idx (company_id, voucher_date, voucher_number)`: its leading columns serve every
-- date-range read the old one served, and keeping both would cost every posting a second index insert. Numbers are
-- still looked up through the `vouchers_company_number_key` unique constraint.
CREATE INDEX IF NOT EXISTS vouchers_company_list_idx
    ON vouchers (company_id, voucher_date, (voucher_number IS NULL), (COALESCE(voucher_number, '')), created_at, id)
    INCLUDE (voucher_number);
DROP INDEX IF EXISTS vouchers_company_date_idx;
