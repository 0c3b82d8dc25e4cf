//! Hometax e-tax invoice list downloads: a file's bytes come in (CSV in UTF-8 or CP949, or a spreadsheet: XLSX, XLS),
//! its invoices come out as [`SourceInvoice`]s. No IO: [`super::inbox`] reads the files.
//!
//! Columns are found by their Korean header names, never by position, because the layout varies between downloads
//! (the reference's column list is in `shared/reference/korean-accounting.md`):
//! - the header row is the first of the first [`HEADER_SCAN_ROWS_MAX`] rows that names 승인번호 and 작성일자, since
//!   spreadsheet downloads put a title and the query above it;
//! - spaces in header names do not matter (`영수/청구 구분`, `공급자 이메일`);
//! - a party's columns are named either with their party (`공급받는자상호`), or bare as the spreadsheet download
//!   names both parties' (`종사업장번호`, `상호`, `대표자명`, `주소`), in which case they belong to the party whose
//!   사업자등록번호 column (`공급자사업자등록번호`, `공급받는자사업자등록번호`) came last before them;
//! - columns the import does not use (발급유형, 영수/청구 구분, e-mails, anything unknown) are skipped, so a download
//!   with more columns reads the same;
//! - the required columns are [`REQUIRED_COLUMNS`]; a header without one of them, with a column twice, or with a bare
//!   party column before any party's number refuses the whole file, since a guess could book the wrong party.
//!
//! An invoice with several items takes one row per item, the invoice's columns repeated; rows with the same approval
//! number are one invoice, and rows that disagree on the invoice's columns make it a rejected one. Blank rows are
//! skipped. A totals row names no business, so the service never attributes it to one.

use std::collections::HashMap;
use std::io::Cursor;

use calamine::{Data, DataType, Reader};

use super::check;
use super::source::{SourceInvoice, SourceItem, SourceParty};

/// Most rows one export file may have, header and title rows included. Hometax lists at most a few thousand invoices
/// a download; this bounds the memory one file takes (a spreadsheet is read whole).
pub const EXPORT_FILE_ROWS_MAX: usize = 100_000;

/// Rows searched for the header row, from the top of the file or sheet.
pub const HEADER_SCAN_ROWS_MAX: usize = 20;

/// The largest integer an `f64` holds exactly (2⁵³). A spreadsheet number beyond it (a 24-digit approval number typed
/// as a number) has lost digits, so it is written in scientific notation, which no rule takes for a number.
const EXACT_FLOAT_INTEGER_MAX: f64 = 9_007_199_254_740_992.0;

/// Kinds of export file, by their extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.csv`: UTF-8 (with or without a byte-order mark) or CP949.
    Csv,
    /// `.xlsx`, `.xlsm`, `.xls`: the first sheet with a header row.
    Spreadsheet,
}

impl Format {
    /// The format of a file by its name's extension, or `None` for a file that is not an export.
    #[must_use]
    pub fn of(file_name: &str) -> Option<Format> {
        let (_, ext) = file_name.rsplit_once('.')?;
        match ext.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "xlsx" | "xlsm" | "xls" => Some(Format::Spreadsheet),
            _ => None,
        }
    }
}

/// Why a file is not a readable export; the caller puts the file's name before the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("is neither UTF-8 nor CP949 (EUC-KR) text")]
    Encoding,
    #[error("is not a readable CSV file: {0}")]
    Csv(String),
    #[error("is not a readable spreadsheet: {0}")]
    Spreadsheet(String),
    #[error("has more than {EXPORT_FILE_ROWS_MAX} rows (EXPORT_FILE_ROWS_MAX)")]
    TooManyRows,
    #[error("has no header row naming 승인번호 and 작성일자 in its first {HEADER_SCAN_ROWS_MAX} rows")]
    NoHeader,
    #[error("has a header that cannot be read: {0}")]
    Header(String),
}

/// The encodings a CSV download comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    /// Windows code page 949, Hometax's (a superset of EUC-KR).
    Cp949,
}

/// Decodes a CSV download: UTF-8 when it has the byte-order mark or is valid UTF-8, else CP949. Korean text in CP949
/// is practically never valid UTF-8, so trying UTF-8 first does not misread it.
///
/// # Errors
/// [`ExportError::Encoding`] for bytes that are neither.
pub fn decode(bytes: &[u8]) -> Result<(String, TextEncoding), ExportError> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return std::str::from_utf8(rest).map(|s| (s.to_owned(), TextEncoding::Utf8)).map_err(|_| ExportError::Encoding);
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok((s.to_owned(), TextEncoding::Utf8));
    }
    encoding_rs::EUC_KR
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|s| (s.into_owned(), TextEncoding::Cp949))
        .ok_or(ExportError::Encoding)
}

/// The two parties of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// 공급자.
    Supplier,
    /// 공급받는자.
    Buyer,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Supplier => "공급자",
            Side::Buyer => "공급받는자",
        }
    }
}

/// The columns of a party.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartyField {
    BusinessNumber,
    SubNumber,
    Name,
    Representative,
    Address,
}

impl PartyField {
    fn label(self) -> &'static str {
        match self {
            PartyField::BusinessNumber => "사업자등록번호",
            PartyField::SubNumber => "종사업장번호",
            PartyField::Name => "상호",
            PartyField::Representative => "대표자명",
            PartyField::Address => "주소",
        }
    }

    fn of(name: &str) -> Option<Self> {
        Some(match name {
            "사업자등록번호" | "등록번호" | "사업자번호" => PartyField::BusinessNumber,
            "종사업장번호" => PartyField::SubNumber,
            "상호" | "상호(법인명)" | "법인명" => PartyField::Name,
            "대표자명" | "대표자" | "성명" => PartyField::Representative,
            "주소" | "사업장주소" => PartyField::Address,
            _ => return None,
        })
    }
}

/// The columns of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemField {
    Date,
    Name,
    Specification,
    Quantity,
    UnitPrice,
    SupplyAmount,
    TaxAmount,
    Remark,
}

impl ItemField {
    const ALL: [ItemField; 8] = [
        ItemField::Date,
        ItemField::Name,
        ItemField::Specification,
        ItemField::Quantity,
        ItemField::UnitPrice,
        ItemField::SupplyAmount,
        ItemField::TaxAmount,
        ItemField::Remark,
    ];

    fn label(self) -> &'static str {
        match self {
            ItemField::Date => "품목일자",
            ItemField::Name => "품목명",
            ItemField::Specification => "품목규격",
            ItemField::Quantity => "품목수량",
            ItemField::UnitPrice => "품목단가",
            ItemField::SupplyAmount => "품목공급가액",
            ItemField::TaxAmount => "품목세액",
            ItemField::Remark => "품목비고",
        }
    }
}

/// A column the import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    WriteDate,
    ApprovalNumber,
    IssueDate,
    TransmitDate,
    Party(Side, PartyField),
    TotalAmount,
    SupplyAmount,
    TaxAmount,
    Classification,
    Kind,
    Remark,
    Item(ItemField),
}

/// Columns without which a file is refused: the invoice's identity, both parties' numbers and names, the supply and
/// what kind of document it is. The others (세액 and 합계금액 among them, which a 계산서 list may leave out) are
/// optional.
pub const REQUIRED_COLUMNS: [Column; 8] = [
    Column::WriteDate,
    Column::ApprovalNumber,
    Column::Party(Side::Supplier, PartyField::BusinessNumber),
    Column::Party(Side::Supplier, PartyField::Name),
    Column::Party(Side::Buyer, PartyField::BusinessNumber),
    Column::Party(Side::Buyer, PartyField::Name),
    Column::SupplyAmount,
    Column::Classification,
];

impl Column {
    /// The column's full name, as messages give it.
    #[must_use]
    pub fn label(self) -> String {
        match self {
            Column::WriteDate => "작성일자".into(),
            Column::ApprovalNumber => "승인번호".into(),
            Column::IssueDate => "발급일자".into(),
            Column::TransmitDate => "전송일자".into(),
            Column::Party(side, field) => format!("{}{}", side.label(), field.label()),
            Column::TotalAmount => "합계금액".into(),
            Column::SupplyAmount => "공급가액".into(),
            Column::TaxAmount => "세액".into(),
            Column::Classification => "전자세금계산서분류".into(),
            Column::Kind => "전자세금계산서종류".into(),
            Column::Remark => "비고".into(),
            Column::Item(f) => f.label().into(),
        }
    }
}

/// What a header cell names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Column(Column),
    /// A party column without its party: the party of the last business number column.
    Bare(PartyField),
    /// Not a column the import reads.
    Other,
}

/// A header cell without spaces (and without a byte-order mark, which a UTF-8 CSV may carry into its first cell).
fn normalize(cell: &str) -> String {
    cell.chars().filter(|c| !c.is_whitespace() && *c != '\u{feff}').collect()
}

fn named(name: &str) -> Named {
    let column = match name {
        "작성일자" | "작성일" => Column::WriteDate,
        "승인번호" | "국세청승인번호" => Column::ApprovalNumber,
        "발급일자" | "발행일자" => Column::IssueDate,
        "전송일자" => Column::TransmitDate,
        "합계금액" | "총금액" => Column::TotalAmount,
        "공급가액" | "공급가액합계" => Column::SupplyAmount,
        "세액" | "세액합계" => Column::TaxAmount,
        "전자세금계산서분류" | "전자계산서분류" | "분류" => Column::Classification,
        "전자세금계산서종류" | "전자계산서종류" | "종류" => Column::Kind,
        "비고" => Column::Remark,
        "품목일자" | "품목일" => Column::Item(ItemField::Date),
        "품목명" => Column::Item(ItemField::Name),
        "품목규격" | "규격" => Column::Item(ItemField::Specification),
        "품목수량" | "수량" => Column::Item(ItemField::Quantity),
        "품목단가" | "단가" => Column::Item(ItemField::UnitPrice),
        "품목공급가액" => Column::Item(ItemField::SupplyAmount),
        "품목세액" => Column::Item(ItemField::TaxAmount),
        "품목비고" => Column::Item(ItemField::Remark),
        _ => {
            // `공급받는자` first: `공급자` is not its prefix, but checking the longer one first keeps that obvious.
            let (side, rest) = match (name.strip_prefix("공급받는자"), name.strip_prefix("공급자")) {
                (Some(rest), _) => (Some(Side::Buyer), rest),
                (None, Some(rest)) => (Some(Side::Supplier), rest),
                (None, None) => (None, name),
            };
            return match (side, PartyField::of(rest)) {
                (Some(side), Some(field)) => Named::Column(Column::Party(side, field)),
                // A bare 사업자등록번호 names no party at all.
                (None, Some(PartyField::BusinessNumber)) | (_, None) => Named::Other,
                (None, Some(field)) => Named::Bare(field),
            };
        }
    };
    Named::Column(column)
}

/// Whether a row is the header: it names 승인번호 and 작성일자.
fn is_header(cells: &[String]) -> bool {
    let names: Vec<Named> = cells.iter().map(|c| named(&normalize(c))).collect();
    names.contains(&Named::Column(Column::ApprovalNumber)) && names.contains(&Named::Column(Column::WriteDate))
}

/// Where each column the import reads is in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    at: HashMap<Column, usize>,
}

impl Header {
    /// Maps a header row (see the module's rules).
    ///
    /// # Errors
    /// What is wrong with it, for the operator.
    pub fn map(cells: &[String]) -> Result<Header, String> {
        let mut at = HashMap::new();
        let mut side = None;
        for (i, cell) in cells.iter().enumerate() {
            let column = match named(&normalize(cell)) {
                Named::Column(c) => c,
                Named::Bare(field) => match side {
                    Some(side) => Column::Party(side, field),
                    None => {
                        return Err(format!("{} comes before either party's 사업자등록번호, so whose it is cannot be told", cell.trim()))
                    }
                },
                Named::Other => continue,
            };
            if let Column::Party(s, PartyField::BusinessNumber) = column {
                side = Some(s);
            }
            if at.insert(column, i).is_some() {
                return Err(format!("{} is named by more than one column", column.label()));
            }
        }
        let missing: Vec<String> = REQUIRED_COLUMNS.iter().filter(|c| !at.contains_key(c)).map(|c| c.label()).collect();
        if !missing.is_empty() {
            return Err(format!("no column for {}", missing.join(", ")));
        }
        Ok(Header { at })
    }

    /// The column's index, if the header has it.
    #[must_use]
    pub fn index(&self, c: Column) -> Option<usize> {
        self.at.get(&c).copied()
    }

    /// The trimmed text of column `c` in `row`; empty when the header or the row does not have it.
    fn cell<'a>(&self, row: &'a [String], c: Column) -> &'a str {
        self.index(c).and_then(|i| row.get(i)).map_or("", |s| s.trim())
    }

    fn party(&self, row: &[String], side: Side) -> SourceParty {
        let f = |field| self.cell(row, Column::Party(side, field)).to_owned();
        SourceParty {
            business_number: f(PartyField::BusinessNumber),
            sub_number: f(PartyField::SubNumber),
            name: f(PartyField::Name),
            representative: f(PartyField::Representative),
            address: f(PartyField::Address),
        }
    }

    /// The invoice's columns of a row, without items or origin.
    fn invoice(&self, row: &[String]) -> SourceInvoice {
        let f = |c| self.cell(row, c).to_owned();
        SourceInvoice {
            approval_number: f(Column::ApprovalNumber),
            write_date: f(Column::WriteDate),
            issue_date: f(Column::IssueDate),
            transmit_date: f(Column::TransmitDate),
            supplier: self.party(row, Side::Supplier),
            buyer: self.party(row, Side::Buyer),
            total_amount: f(Column::TotalAmount),
            supply_amount: f(Column::SupplyAmount),
            tax_amount: f(Column::TaxAmount),
            classification: f(Column::Classification),
            kind: f(Column::Kind),
            remark: f(Column::Remark),
            ..Default::default()
        }
    }

    /// The row's item, or `None` when its item cells are all empty.
    fn item(&self, row: &[String]) -> Option<SourceItem> {
        let f = |field| self.cell(row, Column::Item(field)).to_owned();
        if ItemField::ALL.iter().all(|field| f(*field).is_empty()) {
            return None;
        }
        Some(SourceItem {
            date: f(ItemField::Date),
            name: f(ItemField::Name),
            specification: f(ItemField::Specification),
            quantity: f(ItemField::Quantity),
            unit_price: f(ItemField::UnitPrice),
            supply_amount: f(ItemField::SupplyAmount),
            tax_amount: f(ItemField::TaxAmount),
            remark: f(ItemField::Remark),
        })
    }
}

/// The first invoice column on which two rows of one approval number disagree.
fn disagreement(a: &SourceInvoice, b: &SourceInvoice) -> Option<Column> {
    let pairs = [
        (Column::WriteDate, &a.write_date, &b.write_date),
        (Column::Party(Side::Supplier, PartyField::BusinessNumber), &a.supplier.business_number, &b.supplier.business_number),
        (Column::Party(Side::Buyer, PartyField::BusinessNumber), &a.buyer.business_number, &b.buyer.business_number),
        (Column::SupplyAmount, &a.supply_amount, &b.supply_amount),
        (Column::TaxAmount, &a.tax_amount, &b.tax_amount),
        (Column::TotalAmount, &a.total_amount, &b.total_amount),
        (Column::Classification, &a.classification, &b.classification),
    ];
    pairs.into_iter().find(|(_, x, y)| x != y).map(|(c, _, _)| c)
}

/// A record being gathered from its rows.
struct Gathered {
    invoice: SourceInvoice,
    first_row: usize,
    last_row: usize,
}

/// The invoices of a file's rows (numbered as a person sees them, from 1), after its header row.
fn invoices_of_rows(
    file: &str,
    rows: impl Iterator<Item = Result<(usize, Vec<String>), ExportError>>,
) -> Result<Vec<SourceInvoice>, ExportError> {
    let mut header: Option<Header> = None;
    let mut gathered: Vec<Gathered> = Vec::new();
    let mut by_number: HashMap<String, usize> = HashMap::new();
    for (count, row) in rows.enumerate() {
        if count >= EXPORT_FILE_ROWS_MAX {
            return Err(ExportError::TooManyRows);
        }
        let (n, cells) = row?;
        let Some(h) = &header else {
            if is_header(&cells) {
                header = Some(Header::map(&cells).map_err(ExportError::Header)?);
            } else if count + 1 >= HEADER_SCAN_ROWS_MAX {
                return Err(ExportError::NoHeader);
            }
            continue;
        };
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let invoice = h.invoice(&cells);
        let item = h.item(&cells);
        let number = check::digits(&invoice.approval_number);
        let same = if number.is_empty() { None } else { by_number.get(&number).copied() };
        match same {
            Some(i) => {
                let g = &mut gathered[i];
                if let Some(c) = disagreement(&g.invoice, &invoice) {
                    g.invoice.problems.push(format!("rows {} and {n} have the same 승인번호 but a different {}", g.first_row, c.label()));
                }
                g.invoice.items.extend(item);
                g.last_row = n;
            }
            None => {
                if !number.is_empty() {
                    by_number.insert(number, gathered.len());
                }
                let mut invoice = invoice;
                invoice.items.extend(item);
                gathered.push(Gathered { invoice, first_row: n, last_row: n });
            }
        }
    }
    if header.is_none() {
        return Err(ExportError::NoHeader);
    }
    Ok(gathered
        .into_iter()
        .map(|g| {
            let mut invoice = g.invoice;
            invoice.origin = if g.first_row == g.last_row {
                format!("{file}:{}", g.first_row)
            } else {
                format!("{file}:{}-{}", g.first_row, g.last_row)
            };
            invoice
        })
        .collect())
}

/// The rows of a CSV text, numbered by the line they start on.
fn csv_rows(text: &str) -> impl Iterator<Item = Result<(usize, Vec<String>), ExportError>> + '_ {
    csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes()).into_records().map(|r| {
        let record = r.map_err(|e| ExportError::Csv(e.to_string()))?;
        let line = record.position().map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
        Ok((line, record.iter().map(str::to_owned).collect()))
    })
}

/// A spreadsheet cell as the text a person sees in it: whole numbers without a fraction, dates as `YYYY-MM-DD`.
fn cell_text(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() <= EXACT_FLOAT_INTEGER_MAX => {
            // Exact: the value is a whole number within the range an f64 holds exactly.
            #[allow(clippy::cast_possible_truncation)]
            let whole = *f as i64;
            whole.to_string()
        }
        Data::Float(f) if f.fract() == 0.0 => format!("{f:e}"),
        Data::DateTime(_) | Data::DateTimeIso(_) => d.as_date().map_or_else(|| d.to_string(), |date| date.to_string()),
        other => other.to_string(),
    }
}

/// The invoices of a spreadsheet: those of its first sheet that has a header row.
fn spreadsheet_invoices(file: &str, bytes: &[u8]) -> Result<Vec<SourceInvoice>, ExportError> {
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|e| ExportError::Spreadsheet(e.to_string()))?;
    for sheet in book.sheet_names() {
        let range = book.worksheet_range(&sheet).map_err(|e| ExportError::Spreadsheet(e.to_string()))?;
        if range.height() > EXPORT_FILE_ROWS_MAX {
            return Err(ExportError::TooManyRows);
        }
        // A range starts at its first used cell; rows and columns before it are empty, and rows are numbered as the
        // spreadsheet shows them.
        let (top, left) = range.start().map_or((0, 0), |(r, c)| (r as usize, c as usize));
        let rows = range.rows().enumerate().map(|(i, row)| {
            let cells: Vec<String> = std::iter::repeat_n(String::new(), left).chain(row.iter().map(cell_text)).collect();
            Ok((top + i + 1, cells))
        });
        match invoices_of_rows(file, rows) {
            Err(ExportError::NoHeader) => continue,
            other => return other,
        }
    }
    Err(ExportError::NoHeader)
}

/// The invoices of an export file named `file` (its name is only used in [`SourceInvoice::origin`]).
///
/// # Errors
/// [`ExportError`]: the whole file is refused, so that nothing of it is half read.
pub fn read(file: &str, format: Format, bytes: &[u8]) -> Result<Vec<SourceInvoice>, ExportError> {
    match format {
        Format::Csv => {
            let (text, _) = decode(bytes)?;
            // The csv crate counts a CRLF's line feed towards the next record, which would number every row of a
            // Windows file (as Hometax's are) one too low; line feeds alone number them as a person sees them.
            let text = text.replace("\r\n", "\n");
            invoices_of_rows(file, csv_rows(&text))
        }
        Format::Spreadsheet => spreadsheet_invoices(file, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/hometax");

    fn cells(row: &str) -> Vec<String> {
        row.split(',').map(str::to_owned).collect()
    }

    /// The spreadsheet download's header: bare party columns after each party's number.
    const HOMETAX_HEADER: &str = "작성일자,승인번호,발급일자,전송일자,공급자사업자등록번호,종사업장번호,상호,대표자명,주소,\
        공급받는자사업자등록번호,종사업장번호,상호,대표자명,주소,합계금액,공급가액,세액,전자세금계산서분류,전자세금계산서종류,\
        발급유형,비고,영수/청구 구분,공급자 이메일,공급받는자 이메일1,공급받는자 이메일2,품목일자,품목명,품목규격,품목수량,품목단가,\
        품목공급가액,품목세액,품목비고";

    #[test]
    fn bare_party_columns_belong_to_the_party_before_them() {
        let h = Header::map(&cells(HOMETAX_HEADER)).unwrap();
        assert_eq!(h.index(Column::Party(Side::Supplier, PartyField::Name)), Some(6));
        assert_eq!(h.index(Column::Party(Side::Buyer, PartyField::Name)), Some(11));
        assert_eq!(h.index(Column::Party(Side::Buyer, PartyField::Address)), Some(13));
        assert_eq!(h.index(Column::Item(ItemField::Remark)), Some(32));
        assert_eq!(h.index(Column::Remark), Some(20));
    }

    #[test]
    fn reordered_and_prefixed_columns_map_to_the_same_fields() {
        let csv =
            "\u{feff}공급가액,품목명,공급받는자 상호,승인번호,공급받는자사업자등록번호,세액,공급자상호,작성일자,공급자사업자등록번호,\
                   전자세금계산서분류,품목공급가액\n\
                   \"1,000,000\",용역,(주)한빛전자,20250115-41000078-14582931,124-81-00998,\"100,000\",(주)케이이알피,2025-01-15,\
                   134-86-72683,세금계산서,\"1,000,000\"\n";
        let got = read("r.csv", Format::Csv, csv.as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        let i = &got[0];
        assert_eq!((i.supplier.name.as_str(), i.buyer.name.as_str()), ("(주)케이이알피", "(주)한빛전자"));
        assert_eq!((i.supply_amount.as_str(), i.tax_amount.as_str()), ("1,000,000", "100,000"));
        assert_eq!(i.items[0].name, "용역");
        assert_eq!(i.origin, "r.csv:2");
        let us = super::super::check::check(i, "1348672683").unwrap();
        assert_eq!(us.supply_amount, 1_000_000);
    }

    #[test]
    fn headers_that_could_book_the_wrong_party_are_refused() {
        let e = Header::map(&cells("작성일자,승인번호,상호,공급자사업자등록번호")).unwrap_err();
        assert!(e.starts_with("상호 comes before"), "{e}");
        let e = Header::map(&cells(&format!("{HOMETAX_HEADER},공급받는자상호"))).unwrap_err();
        assert_eq!(e, "공급받는자상호 is named by more than one column");
        let e = Header::map(&cells("작성일자,승인번호,공급자사업자등록번호,공급자상호,공급가액")).unwrap_err();
        assert_eq!(e, "no column for 공급받는자사업자등록번호, 공급받는자상호, 전자세금계산서분류");
        let csv = "작성일자,승인번호,상호\n";
        assert!(matches!(read("x.csv", Format::Csv, csv.as_bytes()), Err(ExportError::Header(_))));
        assert_eq!(read("x.csv", Format::Csv, "a,b\n1,2\n".as_bytes()), Err(ExportError::NoHeader));
    }

    #[test]
    fn cp949_and_utf8_read_alike() {
        let text = format!("{HOMETAX_HEADER}\n2025-01-15,20250115-41000078-14582931,,,134-86-72683,,(주)케이이알피,김정민,서울,\
                            124-81-00998,,(주)한빛전자,이한빛,성남,1100000,1000000,100000,세금계산서,일반,,,,,,,,유지보수,,1,1000000,1000000,100000,\n");
        let (cp949, _, unmappable) = encoding_rs::EUC_KR.encode(&text);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&cp949).is_err(), "CP949 Korean is not UTF-8");
        assert_eq!(decode(&cp949).unwrap().1, TextEncoding::Cp949);
        assert_eq!(decode(text.as_bytes()).unwrap().1, TextEncoding::Utf8);
        let a = read("a.csv", Format::Csv, &cp949).unwrap();
        let b = read("a.csv", Format::Csv, text.as_bytes()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].buyer.representative, "이한빛");
        assert_eq!(decode(b"\xEF\xBB\xBF\xFF"), Err(ExportError::Encoding));
        assert_eq!(decode(b"\x80\xFF\xFF"), Err(ExportError::Encoding));
    }

    #[test]
    fn rows_of_one_approval_number_are_one_invoice() {
        let row = |item: &str, supply: &str| {
            format!("2025-02-28,20250228-10000087-84736291,,,129-81-23453,,(주)오피스테크,,,134-86-72683,,(주)케이이알피,,,,{supply},,세금계산서,일반,,,,,,,,{item},,1,1,1,0,")
        };
        let text = format!("{HOMETAX_HEADER}\n{}\n\n{}\n{}\n", row("노트북", "2"), row("마우스", "2"), row("키보드", "3"));
        let got = read("p.csv", Format::Csv, text.as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["노트북", "마우스", "키보드"]);
        assert_eq!(got[0].origin, "p.csv:2-5");
        assert_eq!(got[0].problems, ["rows 2 and 5 have the same 승인번호 but a different 공급가액"]);
    }

    #[test]
    fn spreadsheet_cells_read_as_shown() {
        assert_eq!(cell_text(&Data::Float(1_100_000.0)), "1100000");
        assert_eq!(cell_text(&Data::Float(1.5)), "1.5");
        assert_eq!(cell_text(&Data::Float(2.025_011_541_000_078e23)), "2.025011541000078e23", "lost digits never pass as a number");
        assert_eq!(cell_text(&Data::Int(1_348_672_683)), "1348672683");
        assert_eq!(cell_text(&Data::DateTimeIso("2025-01-16T00:00:00".into())), "2025-01-16");
        assert_eq!(cell_text(&Data::Empty), "");
        assert_eq!(Format::of("issued.XLSX"), Some(Format::Spreadsheet));
        assert_eq!(Format::of("received.csv"), Some(Format::Csv));
        assert_eq!(Format::of("README.md"), None);
        assert_eq!(Format::of("csv"), None);
    }

    fn sample(name: &str) -> Vec<SourceInvoice> {
        let bytes = std::fs::read(format!("{SAMPLES}/{name}")).unwrap();
        read(name, Format::of(name).unwrap(), &bytes).unwrap()
    }

    #[test]
    fn the_committed_xlsx_sample_reads_past_its_title_rows() {
        let got = sample("issued-2025q1.xlsx");
        let numbers: Vec<&str> = got.iter().map(|i| i.approval_number.as_str()).collect();
        assert_eq!(numbers.len(), 6, "{numbers:?}");
        assert_eq!(got[0].origin, "issued-2025q1.xlsx:6", "the header is row 5, under the title");
        assert_eq!(got[1].origin, "issued-2025q1.xlsx:7-8", "two items, two rows");
        assert_eq!(got[1].items.len(), 2);
        let first = &got[0];
        assert_eq!(first.write_date, "2025-01-15");
        assert_eq!(first.transmit_date, "2025-01-16", "a date cell");
        assert_eq!(first.supply_amount, "1000000", "a number cell");
        assert_eq!((first.supplier.name.as_str(), first.buyer.name.as_str()), ("(주)케이이알피", "(주)한빛전자"));
        assert_eq!(first.buyer.address, "경기도 성남시 분당구 판교역로 235");
        assert_eq!(first.items[0].specification, "월정액");
    }

    #[test]
    fn the_committed_cp949_csv_sample_reads() {
        let bytes = std::fs::read(format!("{SAMPLES}/received-2025q1.csv")).unwrap();
        assert_eq!(decode(&bytes).unwrap().1, TextEncoding::Cp949);
        let got = sample("received-2025q1.csv");
        assert_eq!(got.len(), 6);
        assert_eq!(got[0].supplier.name, "대한물산(주)");
        assert_eq!(got[0].supplier.sub_number, "0001");
        assert_eq!(got[0].buyer.business_number, "1348672683");
        assert_eq!(got[1].items.len(), 2);
        assert_eq!(got[1].origin, "received-2025q1.csv:3-4");
    }
}
