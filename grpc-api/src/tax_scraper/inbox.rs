//! The inbox source: the e-tax invoice list downloads that Hometax users put in a folder (`TAX_SCRAPER_INBOX_DIR`)
//! are read ([`super::export`]) and the invoices of the asked business and period come out, as
//! [`InvoiceSource`] promises. It is the source that works without reaching Hometax; the credentials of the query are
//! not used.
//!
//! - Every `.csv`, `.xlsx`, `.xlsm` and `.xls` file directly in the folder is read, in name order, each call anew (a
//!   file added between two calls is seen by the second). Other files, folders, hidden files (`.name`) and Excel's
//!   lock files (`~$name.xlsx`) are skipped, so notes and scripts may sit beside the downloads.
//! - One folder may hold several businesses' downloads: each call keeps the invoices of its business only
//!   ([`concerns`]). The same approval number in two files (an issued list and a received list that overlap, or one
//!   download saved twice) is one invoice: the first file's, by name.
//! - Limits: [`INBOX_FILES_MAX`] files, [`EXPORT_FILE_BYTES_MAX`] bytes a file, and
//!   [`super::export::EXPORT_FILE_ROWS_MAX`] rows a file.
//!
//! Failures, and why: a folder that is missing or cannot be listed is [`SourceError::Unavailable`] (a mount that is
//! late, a disk that is busy: it may come back, and the caller retries); a file that is too large, or not a readable
//! export, refuses the whole call with [`SourceError::Unreadable`] naming the file, because skipping it would
//! silently leave its invoices out, and only an operator can fix or remove it. The folder's path never reaches the
//! caller; it is logged.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::export::{self, Format};
use super::source::{concerns, InvoiceSource, Scope, ScrapeQuery, SourceError, SourceInvoice, SCRAPE_INVOICES_MAX};

/// Most export files the inbox may hold. Every call reads them all, so this bounds a call's work; an operator
/// archives old downloads elsewhere.
pub const INBOX_FILES_MAX: usize = 200;

/// Largest export file read, in bytes. Hometax's downloads of a few thousand invoices are a few MiB.
pub const EXPORT_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The inbox source; see the module.
#[derive(Debug, Clone)]
pub struct Inbox {
    dir: PathBuf,
}

impl Inbox {
    #[must_use]
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

#[tonic::async_trait]
impl InvoiceSource for Inbox {
    fn name(&self) -> &'static str {
        "inbox"
    }

    async fn invoices(&self, query: &ScrapeQuery) -> Result<Vec<SourceInvoice>, SourceError> {
        // Reading and parsing files blocks; the scope (without the credentials) goes to a blocking thread.
        let (dir, scope) = (self.dir.clone(), query.scope());
        tokio::task::spawn_blocking(move || read_inbox(&dir, &scope)).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the inbox reader panicked");
            Err(SourceError::Unreadable("the inbox could not be read; the cause has been logged".into()))
        })
    }
}

/// Whether a directory entry's name is an export to read, and in what format.
fn export_format(name: &str) -> Option<Format> {
    if name.starts_with('.') || name.starts_with("~$") {
        return None;
    }
    Format::of(name)
}

/// The export files of the folder, sorted by name.
fn export_files(dir: &Path) -> Result<Vec<(String, PathBuf, Format)>, SourceError> {
    let unavailable = |e: std::io::Error| {
        tracing::warn!(dir = %dir.display(), error = %e, "the tax scraper's inbox cannot be listed");
        SourceError::Unavailable("the e-tax invoice inbox cannot be read now; retry later".into())
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unavailable)? {
        let entry = entry.map_err(unavailable)?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let Some(format) = export_format(&name) else { continue };
        if !entry.file_type().map_err(unavailable)?.is_file() {
            continue;
        }
        files.push((name, entry.path(), format));
        if files.len() > INBOX_FILES_MAX {
            return Err(SourceError::Unreadable(format!(
                "the e-tax invoice inbox holds more than {INBOX_FILES_MAX} export files (INBOX_FILES_MAX); an operator must archive old ones"
            )));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// The bytes of a file, at most [`EXPORT_FILE_BYTES_MAX`] (a file that grows while it is read is refused as well).
fn file_bytes(name: &str, path: &Path) -> Result<Vec<u8>, SourceError> {
    let unreadable = |e: std::io::Error| {
        tracing::warn!(file = %path.display(), error = %e, "an inbox file cannot be read");
        SourceError::Unreadable(format!("{name} cannot be read"))
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(unreadable)?.take(EXPORT_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    if bytes.len() as u64 > EXPORT_FILE_BYTES_MAX {
        return Err(SourceError::Unreadable(format!("{name} is larger than {EXPORT_FILE_BYTES_MAX} bytes (EXPORT_FILE_BYTES_MAX)")));
    }
    Ok(bytes)
}

/// The invoices of `scope` in the folder `dir`, each approval number once.
fn read_inbox(dir: &Path, scope: &Scope) -> Result<Vec<SourceInvoice>, SourceError> {
    let mut out: Vec<SourceInvoice> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, path, format) in export_files(dir)? {
        let bytes = file_bytes(&name, &path)?;
        let invoices = export::read(&name, format, &bytes).map_err(|e| SourceError::Unreadable(format!("{name} {e}")))?;
        for invoice in invoices.into_iter().filter(|i| concerns(i, scope)) {
            let number = super::check::digits(&invoice.approval_number);
            // A record without an approval number is its own; one whose number was seen is the same invoice again.
            if !number.is_empty() && !seen.insert(number) {
                continue;
            }
            if out.len() >= SCRAPE_INVOICES_MAX {
                return Err(SourceError::TooMany { limit: SCRAPE_INVOICES_MAX });
            }
            out.push(invoice);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn scope(digits: &str) -> Scope {
        Scope {
            business_digits: digits.into(),
            start_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            end_date: NaiveDate::from_ymd_opt(2025, 3, 31).unwrap(),
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kerp-inbox-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_committed_samples_give_the_quarter_of_one_business() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hometax");
        let got = read_inbox(&dir, &scope("1348672683")).unwrap();
        let origins: Vec<&str> = got.iter().map(|i| i.origin.as_str()).collect();
        // The XLSX's April invoice, the CSV's December one and the CSV's row of two other businesses are left out.
        assert_eq!(
            origins,
            [
                "issued-2025q1.xlsx:6",
                "issued-2025q1.xlsx:7-8",
                "issued-2025q1.xlsx:9",
                "issued-2025q1.xlsx:10",
                "issued-2025q1.xlsx:11",
                "received-2025q1.csv:2",
                "received-2025q1.csv:3-4",
                "received-2025q1.csv:5",
                "received-2025q1.csv:7",
            ]
        );
        let other = read_inbox(&dir, &scope("1178135785")).unwrap();
        assert_eq!(other.len(), 1, "the other business sees its own row only");
        assert_eq!(other[0].buyer.name, "미래유통(주)");
    }

    #[test]
    fn duplicates_across_files_and_unrelated_files_are_skipped() {
        let dir = temp_dir("dup");
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hometax/received-2025q1.csv");
        std::fs::copy(&sample, dir.join("a.csv")).unwrap();
        std::fs::copy(&sample, dir.join("b.CSV")).unwrap();
        std::fs::copy(&sample, dir.join("~$a.csv")).unwrap();
        std::fs::write(dir.join("notes.txt"), "not an export").unwrap();
        std::fs::create_dir(dir.join("archive.csv")).unwrap();
        let got = read_inbox(&dir, &scope("1348672683")).unwrap();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|i| i.origin.starts_with("a.csv:")), "the first file by name wins");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_unavailable_and_a_broken_file_unreadable() {
        let missing = std::env::temp_dir().join(format!("kerp-inbox-missing-{}", uuid::Uuid::new_v4().simple()));
        let e = read_inbox(&missing, &scope("1348672683")).unwrap_err();
        assert!(matches!(e, SourceError::Unavailable(_)), "{e:?}");
        assert!(!e.to_string().contains("kerp-inbox-missing"), "the path is not told to the caller: {e}");

        let dir = temp_dir("broken");
        std::fs::write(dir.join("broken.xlsx"), b"PK\x03\x04 not really a workbook").unwrap();
        let e = read_inbox(&dir, &scope("1348672683")).unwrap_err();
        assert!(matches!(&e, SourceError::Unreadable(m) if m.starts_with("broken.xlsx is not a readable spreadsheet")), "{e:?}");
        std::fs::remove_file(dir.join("broken.xlsx")).unwrap();
        std::fs::write(dir.join("huge.csv"), vec![b'a'; usize::try_from(EXPORT_FILE_BYTES_MAX).unwrap() + 1]).unwrap();
        let e = read_inbox(&dir, &scope("1348672683")).unwrap_err();
        assert!(matches!(&e, SourceError::Unreadable(m) if m.starts_with("huge.csv is larger than")), "{e:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
