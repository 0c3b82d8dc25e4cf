-- Tax invoices (세금계산서): a draft is edited freely; issuing posts its voucher (linked here) and cancelling an issued
-- invoice posts that voucher's reversal. Constraint names are stable: ingest-api maps them to 409/422.

CREATE TABLE invoices (
    id                uuid PRIMARY KEY,
    company_id        uuid NOT NULL REFERENCES companies (id),
    invoice_type      text NOT NULL CHECK (invoice_type IN ('sales', 'purchase')),
    vat_type          text NOT NULL CHECK (vat_type IN ('taxable', 'zero_rated', 'exempt')),
    partner_id        uuid NOT NULL,
    invoice_date      date NOT NULL,
    supply_amount     bigint NOT NULL CHECK (supply_amount > 0),
    tax_amount        bigint NOT NULL CHECK (tax_amount >= 0),
    description       text NOT NULL DEFAULT '',
    -- The account the supply is booked to instead of 4101 (sales) or 1201 (purchases); NULL for the default.
    account_code      text,
    status            text NOT NULL CHECK (status IN ('draft', 'issued', 'cancelled')),
    -- The NTS approval number (24 digits) once transmitted or imported; unique nationwide, so per company too.
    approval_number   text CONSTRAINT invoices_approval_number_format CHECK (approval_number ~ '^[0-9]{24}$'),
    voucher_id        uuid,
    cancel_voucher_id uuid,
    created_by        uuid NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    issued_at         timestamptz,
    cancelled_at      timestamptz,
    CONSTRAINT invoices_company_partner_fkey FOREIGN KEY (company_id, partner_id) REFERENCES partners (company_id, id),
    CONSTRAINT invoices_company_voucher_fkey FOREIGN KEY (company_id, voucher_id) REFERENCES vouchers (company_id, id),
    CONSTRAINT invoices_company_cancel_voucher_fkey FOREIGN KEY (company_id, cancel_voucher_id) REFERENCES vouchers (company_id, id),
    -- An issued invoice has its voucher; a draft has none.
    CONSTRAINT invoices_issued_has_voucher CHECK ((status = 'draft') = (voucher_id IS NULL) OR status = 'cancelled')
);
CREATE UNIQUE INDEX invoices_company_approval_number_key ON invoices (company_id, approval_number) WHERE approval_number IS NOT NULL;
CREATE INDEX invoices_company_date_idx ON invoices (company_id, invoice_date);

CREATE TABLE invoice_items (
    invoice_id    uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    line_no       integer NOT NULL,
    description   text NOT NULL,
    spec          text NOT NULL DEFAULT '',
    quantity      bigint NOT NULL CHECK (quantity > 0),
    unit_price    bigint NOT NULL CHECK (unit_price >= 0),
    supply_amount bigint NOT NULL CHECK (supply_amount = quantity * unit_price),
    PRIMARY KEY (invoice_id, line_no)
);
