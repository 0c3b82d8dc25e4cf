-- Four-insurance (4대보험) EDI reports of grpc-api's InsuranceEDIService: a report per submission (its id is the
-- receipt id) and a line per employee, with the rates the report was computed with, so a stored report explains itself
-- after the rate table has moved on.
--
-- Resident registration numbers are personal data under PIPA. A line holds them only as resident_number_encrypted
-- (AES-256-GCM: a format byte, the random 96-bit nonce, the 13 encrypted digits and the tag, 42 bytes; see
-- grpc-api/src/insurance_edi/cipher.rs) and resident_number_masked (YYMMDD-G******); no column may hold the plain
-- number, and the checks below refuse the two shapes it could be written in.

CREATE TABLE insurance_reports (
    id                           uuid PRIMARY KEY,
    company_id                   uuid NOT NULL REFERENCES companies (id),
    report_type                  text NOT NULL
        CHECK (report_type IN ('national_pension', 'health', 'employment', 'industrial_accident')),
    -- The first day of the report month.
    report_month                 date NOT NULL CHECK (extract(day FROM report_month) = 1),
    -- prepared: computed and stored; transmitted: handed to the EDI portal by its adapter.
    status                       text NOT NULL DEFAULT 'prepared' CHECK (status IN ('prepared', 'transmitted')),
    employer_size_class          text NOT NULL
        CHECK (employer_size_class IN ('under_150', 'priority_support', '150_to_999', '1000_plus')),
    -- The rates and base rules applied (rates in parts per million of the base; long-term care of the health premium).
    employee_rate_ppm            integer NOT NULL CHECK (employee_rate_ppm BETWEEN 0 AND 1000000),
    employer_rate_ppm            integer NOT NULL CHECK (employer_rate_ppm BETWEEN 0 AND 1000000),
    long_term_care_rate_ppm      integer CHECK (long_term_care_rate_ppm BETWEEN 0 AND 1000000),
    base_floor_won               bigint,
    base_cap_won                 bigint,
    employee_count               integer NOT NULL CHECK (employee_count > 0),
    -- Sums over the lines, long-term care included.
    total_employee_contribution  bigint NOT NULL CHECK (total_employee_contribution >= 0),
    total_employer_contribution  bigint NOT NULL CHECK (total_employer_contribution >= 0),
    -- The payroll accrual voucher, when the submission asked for one.
    voucher_id                   uuid,
    created_by                   uuid NOT NULL,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    transmitted_at               timestamptz,
    -- The portal's own receipt, once transmitted.
    portal_receipt               text,
    CONSTRAINT insurance_reports_company_id_key UNIQUE (company_id, id),
    CONSTRAINT insurance_reports_company_voucher_fkey FOREIGN KEY (company_id, voucher_id) REFERENCES vouchers (company_id, id),
    CONSTRAINT insurance_reports_transmitted CHECK ((status = 'transmitted') = (transmitted_at IS NOT NULL))
);
CREATE INDEX insurance_reports_company_month_idx ON insurance_reports (company_id, report_month, report_type);

CREATE TABLE insurance_report_lines (
    company_id                 uuid NOT NULL,
    report_id                  uuid NOT NULL,
    line_no                    integer NOT NULL CHECK (line_no >= 0),
    employee_id                text NOT NULL,
    name                       text NOT NULL,
    resident_number_encrypted  bytea NOT NULL
        CONSTRAINT insurance_report_lines_resident_number_encrypted
        CHECK (octet_length(resident_number_encrypted) = 42 AND get_byte(resident_number_encrypted, 0) = 1),
    resident_number_masked     text NOT NULL
        CONSTRAINT insurance_report_lines_resident_number_masked CHECK (resident_number_masked ~ '^[0-9]{6}-[0-9]\*{6}$'),
    monthly_salary             bigint NOT NULL CHECK (monthly_salary >= 0),
    contribution_base          bigint NOT NULL CHECK (contribution_base >= 0),
    employee_contribution      bigint NOT NULL CHECK (employee_contribution >= 0),
    employer_contribution      bigint NOT NULL CHECK (employer_contribution >= 0),
    long_term_care_employee    bigint NOT NULL DEFAULT 0 CHECK (long_term_care_employee >= 0),
    long_term_care_employer    bigint NOT NULL DEFAULT 0 CHECK (long_term_care_employer >= 0),
    PRIMARY KEY (report_id, line_no),
    -- A line belongs to a report of its own company.
    CONSTRAINT insurance_report_lines_company_report_fkey
        FOREIGN KEY (company_id, report_id) REFERENCES insurance_reports (company_id, id) ON DELETE CASCADE,
    -- Neither text column may carry the plain number in either written form.
    CONSTRAINT insurance_report_lines_no_plain_number
        CHECK (employee_id !~ '[0-9]{6}-?[0-9]{7}' AND name !~ '[0-9]{6}-?[0-9]{7}')
);
