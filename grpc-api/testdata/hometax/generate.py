#!/usr/bin/env python3
"""Writes the sample Hometax e-tax invoice exports that grpc-api's tax scraper reads from its inbox folder.

The two files are what a Hometax user of (주)케이이알피 (134-86-72683) downloads for the first quarter of 2025:

- issued-2025q1.xlsx: the issued list (매출), in the layout of the spreadsheet download: title rows above the header,
  and the party columns 종사업장번호, 상호, 대표자명 and 주소 named alike for the supplier and for the buyer, each set
  following its party's 사업자등록번호 column;
- received-2025q1.csv: the received list (매입) as CSV in CP949, the encoding Hometax downloads use, with the columns
  in another order and the party columns named with their party (공급자상호, 공급받는자상호, ...).

An invoice with several items takes one row per item, the invoice columns repeated. Both files hold a row outside
the quarter, the CSV a row of two other businesses, and each file one malformed row (the XLSX a 15% tax, the CSV a
23-digit approval number and a supplier business number that fails its check digit): README.md beside this script
lists what the scraper makes of each row.

Run it from anywhere with openpyxl installed (`pip install openpyxl==3.1.5`); the output is committed, so the tests
never need Python. Timestamps inside the workbook are fixed, so a rerun changes nothing.
"""

import csv
import datetime
import io
import pathlib
import re
import zipfile

import openpyxl

HERE = pathlib.Path(__file__).resolve().parent

US = ("134-86-72683", "", "(주)케이이알피", "김정민", "서울특별시 강남구 테헤란로 152")
HANBIT = ("124-81-00998", "", "(주)한빛전자", "이한빛", "경기도 성남시 분당구 판교역로 235")
SEOUL = ("220-81-12341", "", "(주)서울상사", "박서울", "서울특별시 중구 세종대로 110")
GLOBAL = ("105-87-04563", "", "글로벌트레이딩(주)", "최세계", "인천광역시 중구 공항로 272")
DAEHAN = ("214-88-30213", "0001", "대한물산(주)", "정대한", "서울특별시 영등포구 여의대로 24")
OFFICE = ("129-81-23453", "", "(주)오피스테크", "한사무", "경기도 수원시 영통구 광교로 145")
BOOKS = ("606-12-34562", "", "바른책방", "윤책", "부산광역시 해운대구 센텀중앙로 79")
OTHER = ("117-81-35785", "", "(주)다른회사", "오다른", "대전광역시 유성구 대학로 99")
MIRAE = ("201-86-09118", "", "미래유통(주)", "남미래", "광주광역시 서구 상무중앙로 7")
# A supplier whose business number fails the check digit (the valid one ends in 6).
BROKEN = ("305-81-77770", "", "(주)오류상사", "서오류", "대구광역시 수성구 달구벌대로 2450")

# (write date, approval number, issue date, transmit date, supplier, buyer, classification, kind, issue type, remark,
#  receipt/claim, supplier e-mail, buyer e-mail, items); an item is (date, name, spec, quantity, unit price, supply,
#  tax, remark). The invoice's supply and tax are its items' sums, unless `amounts` overrides them.
ISSUED = [
    dict(write="2025-01-15", approval="20250115-41000078-14582931", issue="2025-01-15", transmit="2025-01-16",
         supplier=US, buyer=HANBIT, cls="세금계산서", kind="일반", issue_type="정발급", remark="", claim="청구",
         items=[("2025-01-15", "ERP 유지보수 (1월)", "월정액", 1, 1_000_000, 1_000_000, 100_000, "")]),
    dict(write="2025-02-10", approval="20250210-41000078-20394857", issue="2025-02-10", transmit="2025-02-11",
         supplier=US, buyer=SEOUL, cls="세금계산서", kind="일반", issue_type="정발급", remark="2월 컨설팅", claim="청구",
         items=[("2025-02-10", "회계 컨설팅", "인일", 10, 150_000, 1_500_000, 150_000, ""),
                ("2025-02-10", "사용자 교육", "회", 2, 250_000, 500_000, 50_000, "본사 교육장")]),
    dict(write="2025-03-05", approval="20250305-41000078-33019284", issue="2025-03-06", transmit="2025-03-07",
         supplier=US, buyer=GLOBAL, cls="세금계산서", kind="영세율", issue_type="정발급", remark="내국신용장 L/C", claim="영수",
         items=[("2025-03-05", "회계 소프트웨어 라이선스", "수출용", 3, 1_000_000, 3_000_000, 0, "")]),
    # Malformed: 15% tax on a taxable supply.
    dict(write="2025-03-20", approval="20250320-41000078-40918273", issue="2025-03-20", transmit="2025-03-21",
         supplier=US, buyer=HANBIT, cls="세금계산서", kind="일반", issue_type="정발급", remark="", claim="청구",
         items=[("2025-03-20", "현장 지원", "일", 4, 250_000, 1_000_000, 150_000, "")]),
    # Tax rounded up by the issuer: within the 1 won tolerance.
    dict(write="2025-03-25", approval="20250325-41000078-62839405", issue="2025-03-25", transmit="2025-03-26",
         supplier=US, buyer=HANBIT, cls="세금계산서", kind="일반", issue_type="정발급", remark="", claim="청구",
         items=[("2025-03-25", "유지보수 추가작업", "건", 5, 66_667, 333_335, 33_334, "")]),
    # Outside the quarter.
    dict(write="2025-04-02", approval="20250402-41000078-51827364", issue="2025-04-02", transmit="2025-04-03",
         supplier=US, buyer=SEOUL, cls="세금계산서", kind="일반", issue_type="정발급", remark="", claim="청구",
         items=[("2025-04-02", "ERP 유지보수 (4월)", "월정액", 1, 500_000, 500_000, 50_000, "")]),
]

RECEIVED = [
    dict(write="2025-01-20", approval="20250121-10000029-73645182", issue="2025-01-21", transmit="2025-01-22",
         supplier=DAEHAN, buyer=US, cls="세금계산서", kind="일반", issue_type="정발급", remark="", claim="청구",
         items=[("2025-01-20", "A4 복사용지", "80g 2500매", 50, 24_000, 1_200_000, 120_000, "")]),
    dict(write="2025-02-28", approval="20250228-10000087-84736291", issue="2025-02-28", transmit="2025-03-01",
         supplier=OFFICE, buyer=US, cls="세금계산서", kind="일반", issue_type="정발급", remark="사무기기", claim="영수",
         items=[("2025-02-28", "노트북", "15인치 16GB", 2, 1_350_000, 2_700_000, 270_000, ""),
                ("2025-02-28", "무선 마우스", "", 2, 25_000, 50_000, 5_000, "")]),
    # A 계산서 for VAT-exempt goods: no tax.
    dict(write="2025-03-14", approval="20250314-12000045-95847302", issue="2025-03-14", transmit="2025-03-15",
         supplier=BOOKS, buyer=US, cls="계산서", kind="일반", issue_type="정발급", remark="", claim="영수",
         items=[("2025-03-14", "회계 실무 도서", "", 5, 30_000, 150_000, 0, "")]),
    # Two other businesses: not (주)케이이알피's, never reported to it.
    dict(write="2025-02-11", approval="20250211-10000029-16273849", issue="2025-02-11", transmit="2025-02-12",
         supplier=OTHER, buyer=MIRAE, cls="세금계산서", kind="일반", issue_type="정발급", remark="", claim="청구",
         items=[("2025-02-11", "물류 대행", "", 1, 800_000, 800_000, 80_000, "")]),
    # Malformed: a 23-digit approval number and a supplier business number that fails its check digit.
    dict(write="2025-03-18", approval="20250318-1000009-10000123", issue="2025-03-18", transmit="2025-03-19",
         supplier=BROKEN, buyer=US, cls="세금계산서", kind="일반", issue_type="정발급", remark="", claim="청구",
         items=[("2025-03-18", "복합기 임대", "월", 1, 90_000, 90_000, 9_000, "")]),
    # Outside the quarter.
    dict(write="2024-12-30", approval="20241230-10000029-27384950", issue="2024-12-30", transmit="2024-12-31",
         supplier=DAEHAN, buyer=US, cls="세금계산서", kind="일반", issue_type="정발급", remark="", claim="청구",
         items=[("2024-12-30", "토너", "", 3, 60_000, 180_000, 18_000, "")]),
]


def totals(inv):
    supply = sum(i[5] for i in inv["items"])
    tax = sum(i[6] for i in inv["items"])
    return supply, tax, supply + tax


def issued_xlsx(path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "매출"
    ws.append(["전자(세금)계산서 목록조회 - 매출"])
    ws.append(["조회기간", "2025-01-01 ~ 2025-04-30", "사업자등록번호", US[0]])
    ws.append(["※ 합계금액, 공급가액, 세액의 단위는 원입니다."])
    ws.append([])
    ws.append([
        "작성일자", "승인번호", "발급일자", "전송일자",
        "공급자사업자등록번호", "종사업장번호", "상호", "대표자명", "주소",
        "공급받는자사업자등록번호", "종사업장번호", "상호", "대표자명", "주소",
        "합계금액", "공급가액", "세액", "전자세금계산서분류", "전자세금계산서종류", "발급유형", "비고", "영수/청구 구분",
        "공급자 이메일", "공급받는자 이메일1", "공급받는자 이메일2",
        "품목일자", "품목명", "품목규격", "품목수량", "품목단가", "품목공급가액", "품목세액", "품목비고",
    ])
    for inv in ISSUED:
        supply, tax, total = totals(inv)
        for item in inv["items"]:
            # The transmit date is a real date cell, the other dates text, as both appear in downloads.
            transmit = datetime.datetime.strptime(inv["transmit"], "%Y-%m-%d")
            ws.append([
                inv["write"], inv["approval"], inv["issue"], transmit,
                *inv["supplier"], *inv["buyer"],
                total, supply, tax, inv["cls"], inv["kind"], inv["issue_type"], inv["remark"], inv["claim"],
                "tax@kerp.example", "account@buyer.example", "",
                *item,
            ])
            ws.cell(row=ws.max_row, column=4).number_format = "yyyy-mm-dd"
    fixed = datetime.datetime(2025, 5, 2, 9, 0, 0)
    wb.properties.created = fixed
    wb.properties.modified = fixed
    wb.properties.creator = "K-ERP sample"
    raw = io.BytesIO()
    wb.save(raw)
    # zipfile stamps each entry with the time of writing; copying the entries with a fixed stamp makes reruns equal.
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=(2025, 5, 2, 9, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                # openpyxl sets the modified time to the time of saving, whatever the properties say.
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2025-05-02T09:00:00Z", data)
            dst.writestr(entry, data)


def received_csv(path):
    header = [
        "승인번호", "작성일자", "발급일자", "전송일자", "전자세금계산서분류", "전자세금계산서종류",
        "공급받는자사업자등록번호", "공급받는자종사업장번호", "공급받는자상호", "공급받는자대표자명", "공급받는자주소",
        "공급자사업자등록번호", "공급자종사업장번호", "공급자상호", "공급자대표자명", "공급자주소",
        "공급가액", "세액", "합계금액", "발급유형", "영수/청구 구분", "비고", "공급자이메일", "공급받는자이메일1",
        "품목일자", "품목명", "품목규격", "품목수량", "품목단가", "품목공급가액", "품목세액", "품목비고",
    ]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(header)
    for inv in RECEIVED:
        supply, tax, total = totals(inv)
        for item in inv["items"]:
            # Business numbers without dashes and amounts with thousands separators, as this download shows them.
            bare = lambda party: [party[0].replace("-", ""), *party[1:]]
            money = lambda n: f"{n:,}"
            w.writerow([
                inv["approval"], inv["write"].replace("-", ""), inv["issue"], inv["transmit"], inv["cls"], inv["kind"],
                *bare(inv["buyer"]), *bare(inv["supplier"]),
                money(supply), money(tax), money(total), inv["issue_type"], inv["claim"], inv["remark"],
                "sales@supplier.example", "tax@kerp.example",
                item[0].replace("-", ""), item[1], item[2], item[3], money(item[4]), money(item[5]), money(item[6]), item[7],
            ])
    path.write_bytes(out.getvalue().encode("cp949"))


if __name__ == "__main__":
    issued_xlsx(HERE / "issued-2025q1.xlsx")
    received_csv(HERE / "received-2025q1.csv")
