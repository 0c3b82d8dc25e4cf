-- K-ERP source of truth: companies, users, the chart of accounts, partners, vouchers with their lines, and the outbox
-- that the relay publishes to Kafka. Constraint names are stable: ingest-api maps them to 409/422 responses.

CREATE TABLE companies (
    id              uuid PRIMARY KEY,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    business_number text,
    -- The per-company event sequence. Bumping it inside each posting transaction orders a company's events by commit
    -- and gives the fold its duplicate guard (see docs/exactly-once.md).
    event_seq       bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id         uuid PRIMARY KEY,
    company_id uuid NOT NULL REFERENCES companies (id),
    email      text NOT NULL,
    name       text NOT NULL,
    role       text NOT NULL CHECK (role IN ('admin', 'accountant', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE accounts (
    id           uuid PRIMARY KEY,
    company_id   uuid NOT NULL REFERENCES companies (id),
    code         text NOT NULL,
    name         text NOT NULL,
    name_en      text NOT NULL DEFAULT '',
    account_type text NOT NULL CHECK (account_type IN ('asset', 'liability', 'equity', 'revenue', 'expense')),
    is_active    boolean NOT NULL DEFAULT true,
    CONSTRAINT accounts_company_code_key UNIQUE (company_id, code)
);

CREATE TABLE partners (
    id              uuid PRIMARY KEY,
    company_id      uuid NOT NULL REFERENCES companies (id),
    code            text NOT NULL,
    name            text NOT NULL,
    business_number text,
    partner_type    text NOT NULL CHECK (partner_type IN ('customer', 'supplier', 'both')),
    is_active       boolean NOT NULL DEFAULT true,
    CONSTRAINT partners_company_code_key UNIQUE (company_id, code)
);
CREATE INDEX partners_company_idx ON partners (company_id);

-- Gapless voucher numbering: one row per company and month, bumped inside the posting transaction, so a rolled-back
-- posting gives its number back and concurrent posts queue on the row lock.
CREATE TABLE voucher_counters (
    company_id uuid NOT NULL REFERENCES companies (id),
    period     date NOT NULL,
    last_no    integer NOT NULL,
    PRIMARY KEY (company_id, period)
);

CREATE TABLE vouchers (
    id             uuid PRIMARY KEY,
    company_id     uuid NOT NULL REFERENCES companies (id),
    voucher_number text NOT NULL,
    voucher_date   date NOT NULL,
    voucher_type   text NOT NULL,
    description    text NOT NULL DEFAULT '',
    status         text NOT NULL CHECK (status IN ('draft', 'approved')),
    total_debit    bigint NOT NULL CHECK (total_debit > 0),
    total_credit   bigint NOT NULL,
    created_by     uuid NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT vouchers_balanced CHECK (total_debit = total_credit),
    CONSTRAINT vouchers_company_number_key UNIQUE (company_id, voucher_number)
);
CREATE INDEX vouchers_company_date_idx ON vouchers (company_id, voucher_date, voucher_number);

CREATE TABLE voucher_lines (
    voucher_id  uuid NOT NULL REFERENCES vouchers (id),
    line_no     integer NOT NULL,
    company_id  uuid NOT NULL,
    account_id  uuid NOT NULL REFERENCES accounts (id),
    partner_id  uuid REFERENCES partners (id),
    debit       bigint NOT NULL DEFAULT 0,
    credit      bigint NOT NULL DEFAULT 0,
    description text NOT NULL DEFAULT '',
    PRIMARY KEY (voucher_id, line_no),
    CONSTRAINT voucher_lines_one_side CHECK ((debit > 0 AND credit = 0) OR (credit > 0 AND debit = 0))
);
CREATE INDEX voucher_lines_account_idx ON voucher_lines (company_id, account_id);

-- Events waiting for the relay. A row is deleted only after Kafka acknowledged its message.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    company_id uuid NOT NULL,
    topic      text NOT NULL,
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
