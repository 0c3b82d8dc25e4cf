#!/usr/bin/env python3
"""Calls every K-ERP gRPC service once, the way the existing clients do: Python grpcio with stubs that grpcio-tools
compiles from our .proto files (schemas/proto). `compose/dev grpc-client` runs it against the dev stack, and .ci/run
runs that after the smoke test.

    python3 e2e/grpc_client.py --token TOKEN --company-id ID --business-number 134-86-72683

It exits 1 on the first call that does not answer as the contract says.
"""

import argparse
import pathlib
import sys
import tempfile
import uuid

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO = ROOT / "schemas" / "proto"
PROTOS = ["kerp/v1/vouchers.proto", "kerp/v1/reports.proto", "tax_scraper.proto", "insurance_edi.proto"]


def compile_stubs(out: pathlib.Path) -> None:
    """Generates the *_pb2 and *_pb2_grpc modules, as the existing clients' build does."""
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    for p in PROTOS:
        args = ["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", str(PROTO / p)]
        if protoc.main(args) != 0:
            sys.exit(f"grpcio-tools could not compile {p}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="127.0.0.1:50051")
    ap.add_argument("--edi-target", default="127.0.0.1:50052")
    ap.add_argument("--token", required=True)
    ap.add_argument("--company-id", required=True)
    ap.add_argument("--business-number", required=True, help="the company's, as its Hometax exports name it")
    args = ap.parse_args()

    out = pathlib.Path(tempfile.mkdtemp(prefix="kerp-grpc-stubs-"))
    compile_stubs(out)
    sys.path.insert(0, str(out))
    import grpc  # noqa: E402  (after the stubs exist)
    from kerp.v1 import reports_pb2, reports_pb2_grpc, vouchers_pb2, vouchers_pb2_grpc  # noqa: E402
    import insurance_edi_pb2  # noqa: E402
    import insurance_edi_pb2_grpc  # noqa: E402
    import tax_scraper_pb2  # noqa: E402
    import tax_scraper_pb2_grpc  # noqa: E402

    md = [("authorization", f"Bearer {args.token}")]
    failures = []
    checks = []

    def check(what: str, ok: bool, detail: object) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {detail}")
        checks.append(what)
        if not ok:
            failures.append(what)

    main_channel = grpc.insecure_channel(args.target)
    vouchers = vouchers_pb2_grpc.VoucherServiceStub(main_channel)
    line = vouchers_pb2.LineInput
    voucher = vouchers_pb2.VoucherInput(
        voucher_date="2025-06-10",
        voucher_type=vouchers_pb2.VOUCHER_TYPE_GENERAL,
        description="grpc client",
        lines=[line(account_code="5212", debit_amount=12_000), line(account_code="1101", credit_amount=12_000)],
    )
    created = vouchers.CreateVoucher(vouchers_pb2.CreateVoucherRequest(request_id=str(uuid.uuid4()), voucher=voucher), metadata=md, timeout=30)
    check("VoucherService.CreateVoucher", bool(created.voucher.id) and created.voucher.voucher_number.startswith("2025-06-"), created.voucher.voucher_number)
    got = vouchers.GetVoucher(vouchers_pb2.GetVoucherRequest(id=created.voucher.id), metadata=md, timeout=30)
    check("VoucherService.GetVoucher", got.voucher.id == created.voucher.id and len(got.voucher.lines) == 2, got.voucher.voucher_number)
    bad = vouchers_pb2.VoucherInput(voucher_date="2025-06-11", lines=[line(account_code="5212", debit_amount=1)])
    items = [vouchers_pb2.CreateVoucherRequest(request_id=str(uuid.uuid4()), voucher=v) for v in (voucher, bad, voucher)]
    bulk = vouchers.CreateVouchers(iter(items), metadata=md, timeout=60)
    landed = sum(1 for r in bulk.results if r.HasField("voucher"))
    check("VoucherService.CreateVouchers (client stream, one bad item)", landed == 2 and len(bulk.results) == 3, f"{landed} of {len(bulk.results)} landed")
    try:
        vouchers.CreateVoucher(vouchers_pb2.CreateVoucherRequest(voucher=voucher), timeout=30)
        check("VoucherService without a token", False, "answered")
    except grpc.RpcError as e:
        check("VoucherService without a token", e.code() == grpc.StatusCode.UNAUTHENTICATED, e.code())

    reports = reports_pb2_grpc.ReportServiceStub(main_channel)
    tb = reports.TrialBalance(reports_pb2.TrialBalanceRequest(year=2025, month=6), metadata=md, timeout=30)
    check("ReportService.TrialBalance", tb.totals.period_debit == tb.totals.period_credit, f"{len(tb.accounts)} accounts, debit {tb.totals.period_debit}")
    parts = list(reports.AccountLedger(reports_pb2.AccountLedgerRequest(account_code="1101", year=2025), metadata=md, timeout=60))
    check("ReportService.AccountLedger (server stream)", len(parts) >= 2, f"{len(parts)} messages")

    scraper = tax_scraper_pb2_grpc.TaxScraperServiceStub(main_channel)
    scraped = scraper.ScrapeInvoices(
        tax_scraper_pb2.ScrapeInvoicesRequest(
            business_number=args.business_number,
            user_id="ci-client",
            password="not-a-real-password",
            cert_path="/nonexistent/signCert.der",
            start_date="2025-01-01",
            end_date="2025-03-31",
        ),
        metadata=md,
        timeout=60,
    )
    check("TaxScraperService.ScrapeInvoices", len(scraped.invoices) > 0, f"{len(scraped.invoices)} invoices")

    edi = insurance_edi_pb2_grpc.InsuranceEDIServiceStub(grpc.insecure_channel(args.edi_target))
    report = edi.SubmitReport(
        insurance_edi_pb2.SubmitReportRequest(
            company_id=args.company_id,
            report_type=insurance_edi_pb2.NATIONAL_PENSION,
            report_month="2025-09",
            employees=[
                insurance_edi_pb2.EmployeeData(employee_id="E001", name="김민준", resident_number="900101-1234567", monthly_salary=3_456_789),
                insurance_edi_pb2.EmployeeData(employee_id="E002", name="이서연", resident_number="010203-4123456", monthly_salary=7_000_000),
            ],
        ),
        metadata=md,
        timeout=30,
    )
    check("InsuranceEDIService.SubmitReport", bool(report.receipt_id) and "1234567" not in str(report), report.receipt_id)

    print(f"grpc client: {len(checks) - len(failures)} of {len(checks)} checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
