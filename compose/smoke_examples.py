#!/usr/bin/env python3
"""The README's second block of curl examples (master data, the voucher lifecycle, tax invoices, statements), run
through nginx as a company of their own and checked, for `compose/dev smoke`.

A fresh company per run, so the examples' fixed codes (partner C100, account 5299) never collide with an earlier run
and the demo company's books stay as they are; the user's address gets a suffix, since addresses are unique across
companies. Standard library only. Exits 1 with the failing
step on the first answer that is not what the README documents.

    python3 compose/smoke_examples.py --url http://127.0.0.1:8080 --token <a fresh company's admin token>
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid

# How long the statements may take to show what was posted: the fold is about a second behind; this leaves room for a
# busy CI machine without letting a stuck pipeline pass.
REPORT_WAIT_SECONDS_MAX = 60


class Api:
    def __init__(self, url, token):
        self.url, self.token = url.rstrip("/"), token

    def call(self, method, path, body=None, headers=None, token=None, raw_json_header=False):
        """Returns (status, parsed body or None, response headers)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        if body is not None or raw_json_header:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, text, hdrs = r.status, r.read().decode(), r.headers
        except urllib.error.HTTPError as e:
            status, text, hdrs = e.code, e.read().decode(), e.headers
        return status, (json.loads(text) if text else None), hdrs


def check(cond, step, detail):
    if not cond:
        print(f"smoke examples: {step}: {detail}", file=sys.stderr)
        sys.exit(1)


def expect(api, step, status, method, path, body=None, **kw):
    got, doc, hdrs = api.call(method, path, body, **kw)
    check(got == status, step, f"{method} {path} answered {got}, not {status}: {doc}")
    return doc, hdrs


def eventually(step, probe):
    """Polls `probe` (which returns a value or None) until it answers, or fails the step."""
    deadline = time.monotonic() + REPORT_WAIT_SECONDS_MAX
    last = None
    while time.monotonic() < deadline:
        ok, last = probe()
        if ok:
            return last
        time.sleep(0.3)
    check(False, step, f"not visible within {REPORT_WAIT_SECONDS_MAX} s; last answer: {last}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True, help="the admin token of a company with no books yet")
    a = p.parse_args()
    api = Api(a.url, a.token)

    # Master data.
    doc, _ = expect(api, "partner", 201, "POST", "/api/v1/partners",
                    {"code": "C100", "name": "(주)한빛전자", "business_number": "124-81-00998", "partner_type": "customer"})
    partner = doc["data"]["id"]
    doc, _ = expect(api, "partner search", 200, "GET", "/api/v1/partners?q=%ED%95%9C%EB%B9%9B&page=1&page_size=50")
    check([x["code"] for x in doc["data"]] == ["C100"], "partner search", f"q=한빛 found {doc['data']}")
    expect(api, "department", 201, "POST", "/api/v1/departments", {"code": "RND", "name": "연구소"})
    doc, _ = expect(api, "account", 201, "POST", "/api/v1/accounts", {"code": "5299", "name": "잡비"})
    doc, _ = expect(api, "account rename", 200, "PATCH", f"/api/v1/accounts/{doc['data']['id']}", {"name": "잡손비"})
    check(doc["data"]["name"] == "잡손비", "account rename", doc)
    # E-mail addresses are unique across companies (a user signs in by one), so each run takes its own.
    email = f"kim+{uuid.uuid4().hex[:12]}@example.kr"
    doc, _ = expect(api, "user", 201, "POST", "/api/v1/users", {"email": email, "name": "김회계", "role": "accountant"})
    doc, _ = expect(api, "user token", 200, "POST", f"/api/v1/users/{doc['data']['id']}/token")
    accountant = doc["data"]["token"]
    expect(api, "the user's token reads", 200, "GET", "/api/v1/accounts", token=accountant)
    expect(api, "the user's role is checked", 403, "POST", "/api/v1/departments", {"code": "X", "name": "x"}, token=accountant)
    doc, _ = expect(api, "company settings", 200, "PATCH", "/api/v1/company", {"fiscal_start_month": 4})
    check(doc["data"]["fiscal_start_month"] == 4, "company settings", doc)
    expect(api, "company settings back", 200, "PATCH", "/api/v1/company", {"fiscal_start_month": 1})

    # The voucher lifecycle, with an idempotency key.
    draft = {"voucher_date": "2025-03-16", "status": "draft",
             "lines": [{"account_code": "5212", "debit_amount": 5000}, {"account_code": "1101", "credit_amount": 5000}]}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    doc, _ = expect(api, "draft", 201, "POST", "/api/v1/vouchers", draft, headers=key)
    check(doc["data"]["status"] == "draft" and doc["data"]["voucher_number"] is None, "draft", doc)
    again, hdrs = expect(api, "draft replayed", 201, "POST", "/api/v1/vouchers", draft, headers=key)
    check(again == doc and hdrs.get("Idempotent-Replayed") == "true", "draft replayed", f"{hdrs.items()} {again}")
    vid = doc["data"]["id"]
    doc, _ = expect(api, "approve", 200, "POST", f"/api/v1/vouchers/{vid}/approve")
    check(doc["data"]["voucher_number"] == "2025-03-000001", "approve", doc)
    expect(api, "reverse", 201, "POST", f"/api/v1/vouchers/{vid}/reverse", {"reason": "wrong account"})
    doc, _ = expect(api, "reversed", 200, "GET", f"/api/v1/vouchers/{vid}")
    check(doc["data"]["status"] == "reversed", "reversed", doc)
    expect(api, "close", 200, "POST", "/api/v1/periods/2025-03/close")
    expect(api, "a closed month refuses postings", 409, "POST", "/api/v1/vouchers", {**draft, "status": "approved"})
    doc, _ = expect(api, "periods", 200, "GET", "/api/v1/periods?year=2025")
    check(any(x.get("period") == "2025-03" and x.get("state") == "closed" for x in doc["data"]), "periods", doc)
    expect(api, "reopen", 200, "POST", "/api/v1/periods/2025-03/reopen")

    # Tax invoices: issue arrives with an empty body and Content-Type: application/json, as the clients send it.
    doc, _ = expect(api, "invoice", 201, "POST", "/api/v1/invoices", {
        "invoice_type": "sales", "partner_id": partner, "invoice_date": "2025-03-15", "supply_amount": 1000000,
        "tax_amount": 100000, "items": [{"description": "Service fee", "quantity": 1, "unit_price": 1000000}]})
    doc, _ = expect(api, "issue", 200, "POST", f"/api/v1/invoices/{doc['data']['id']}/issue", raw_json_header=True)
    check(doc["data"]["status"] == "issued" and doc["data"]["voucher_id"], "issue", doc)
    doc, _ = expect(api, "invoice list", 200, "GET",
                    "/api/v1/invoices?status=issued&invoice_type=sales&from_date=2025-01-01&to_date=2025-03-31")
    check(doc["pagination"]["total"] == 1, "invoice list", doc)

    # Statements, once folded: the sale is revenue, a receivable on the partner, and output VAT; the balance sheet
    # balances.
    def get(path):
        return api.call("GET", path)[:2]

    def income():
        s, d = get("/api/v1/reports/income-statement?year=2025&month=3")
        return s == 200 and d["data"]["net_income"]["month"] == 1000000, d
    eventually("income statement", income)

    def balance():
        s, d = get("/api/v1/reports/balance-sheet?as_of=2025-03-31")
        ok = s == 200 and d["data"]["assets"]["total"] == 1100000 and d["data"]["total_liabilities_and_equity"] == 1100000
        return ok, d
    eventually("balance sheet", balance)

    def partner_ledger():
        s, d = get(f"/api/v1/reports/partner-ledger?partner_id={partner}&from_date=2025-01-01&to_date=2025-12-31")
        return s == 200 and d["data"]["closing_receivable"] == 1100000, d
    eventually("partner ledger", partner_ledger)

    def vat():
        s, d = get("/api/v1/reports/vat-summary?year=2025&quarter=1")
        return s == 200 and d["data"]["output_vat"] == 100000, d
    eventually("VAT summary", vat)
    print("smoke examples: master data, lifecycle, invoices and statements answered as documented")


if __name__ == "__main__":
    main()
