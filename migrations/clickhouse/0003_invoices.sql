-- Tax invoices (세금계산서, and 계산서 when exempt) as InvoiceChanged carried them: each event is an invoice's whole new
-- state, so the table is a ReplacingMergeTree on the change's version (its time in microseconds). The newest change of
-- an invoice wins, and folding the same event twice writes the same row again. Readers use FINAL, which collapses an
-- invoice's versions before anything is counted or summed. The VAT summary reads it; it never reads Postgres.
--
-- approval_number is '' and voucher_id the nil UUID where the event has null, as partners.business_number and
-- ledger_lines.partner_id do, so no column needs Nullable (which costs every read a null map) and readers compare
-- with one value.
CREATE TABLE IF NOT EXISTS invoices{v} (
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
) ENGINE = ReplacingMergeTree(version)
ORDER BY (company_id, invoice_id)
