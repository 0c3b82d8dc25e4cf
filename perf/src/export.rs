//! `kerp-perf export`: the master data the k6 scripts pick from. A company's token flows in; its chart of accounts
//! (`GET /api/v1/accounts`) and every partner (`GET /api/v1/partners`, page by page) are read through the public API
//! and written as `accounts.json` and `partners.json` in the output folder, trimmed to what the scripts use (ids,
//! codes, names, types, whether active). k6 reads them with `open()` in its init context, once per run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Partners asked for per page: the API's own `PAGE_SIZE_MAX`, so a large company takes few round trips.
const PARTNER_PAGE_SIZE: u32 = 500;

/// Most partner pages read, 1,000 pages of 500 (half a million partners): far above the thresholds file's largest
/// size (1,000 per company), so hitting it means the API keeps answering full pages, and the export stops.
const PARTNER_PAGES_MAX: u32 = 1_000;

/// Seconds one API request may take before the export gives up.
const REQUEST_SECONDS_MAX: u64 = 60;

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// The public base URL of the API (nginx), as the k6 scripts' BASE_URL.
    #[arg(long, env = "BASE_URL", default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// A bearer token of the company whose data the scripts will load (any role reads); e.g. `$(compose/dev token)`.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The folder to write `accounts.json` and `partners.json` to, created if missing; the k6 scripts' DATA_DIR.
    #[arg(long, env = "DATA_DIR", default_value = "perf/data")]
    pub out_dir: PathBuf,
}

/// One account as the k6 scripts read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedAccount {
    pub id: String,
    pub code: String,
    pub name: String,
    /// `asset`, `liability`, `equity`, `revenue` or `expense`.
    pub account_type: String,
    pub is_active: bool,
}

/// One partner as the k6 scripts read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedPartner {
    pub id: String,
    pub code: String,
    pub name: String,
    /// `customer`, `supplier` or `both`: sales invoices need a customer, purchases a supplier.
    pub partner_type: String,
    pub is_active: bool,
}

/// What an export wrote, for a caller that runs it in-process (the perf runner).
#[derive(Debug, Clone)]
pub struct Exported {
    pub accounts: usize,
    pub partners: usize,
    pub accounts_path: PathBuf,
    pub partners_path: PathBuf,
}

#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

/// Exports and prints what was written.
///
/// # Errors
/// The API cannot be reached or answers an error; a file cannot be written.
pub async fn run(args: &ExportArgs) -> Result<()> {
    let e = export(args).await?;
    println!("export: {} accounts → {}", e.accounts, e.accounts_path.display());
    println!("export: {} partners → {}", e.partners, e.partners_path.display());
    Ok(())
}

/// Reads the company's accounts and partners from the API and writes the two files.
///
/// # Errors
/// The API cannot be reached or answers an error; a file cannot be written.
pub async fn export(args: &ExportArgs) -> Result<Exported> {
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(REQUEST_SECONDS_MAX)).build()?;
    let base = args.base_url.trim_end_matches('/');
    let get = |path: String| {
        let req = http.get(format!("{base}{path}")).bearer_auth(&args.token);
        async move {
            let res = req.send().await.with_context(|| format!("GET {path}"))?;
            let status = res.status();
            let text = res.text().await.with_context(|| format!("GET {path}: reading the body"))?;
            if !status.is_success() {
                bail!("GET {path} answered {status}: {text}");
            }
            Ok(text)
        }
    };

    let accounts: Data<Vec<ExportedAccount>> =
        serde_json::from_str(&get("/api/v1/accounts".to_owned()).await?).context("GET /api/v1/accounts: unexpected body")?;
    let mut partners = Vec::new();
    for page in 1..=PARTNER_PAGES_MAX {
        let body = get(format!("/api/v1/partners?page={page}&page_size={PARTNER_PAGE_SIZE}")).await?;
        let Data { data } = serde_json::from_str::<Data<Vec<ExportedPartner>>>(&body).context("GET /api/v1/partners: unexpected body")?;
        // A short page is the last one; reading until then does not depend on the answer's total, which a keyset
        // or estimated pagination may leave out or round.
        let last = data.len() < PARTNER_PAGE_SIZE as usize;
        partners.extend(data);
        if last {
            break;
        }
        if page == PARTNER_PAGES_MAX {
            bail!("more than {PARTNER_PAGES_MAX} pages of partners: stopped");
        }
    }

    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    let accounts_path = args.out_dir.join("accounts.json");
    let partners_path = args.out_dir.join("partners.json");
    write_json(&accounts_path, &accounts.data)?;
    write_json(&partners_path, &partners)?;
    Ok(Exported { accounts: accounts.data.len(), partners: partners.len(), accounts_path, partners_path })
}

/// Writes through a temporary file and a rename, so a k6 run starting meanwhile never reads half a file.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's bodies carry more fields than the export keeps; they are dropped, and the types stay strings.
    #[test]
    fn api_bodies_are_trimmed_to_what_k6_reads() {
        let accounts: Data<Vec<ExportedAccount>> = serde_json::from_str(
            r#"{"data":[{"id":"0b6c0000-0000-4000-8000-000000000001","code":"1101","name":"현금","name_en":"Cash",
                "account_type":"asset","is_active":true}]}"#,
        )
        .expect("accounts");
        assert_eq!(accounts.data[0].account_type, "asset");
        let partners: Data<Vec<ExportedPartner>> = serde_json::from_str(
            r#"{"data":[{"id":"0b6c0000-0000-4000-8000-000000000002","code":"C100","name":"(주)한빛전자",
                "business_number":"124-81-00998","partner_type":"customer","representative":"","address":"",
                "is_active":true,"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"}],
                "pagination":{"page":1,"page_size":500,"total":1}}"#,
        )
        .expect("partners");
        let out = serde_json::to_value(&partners.data[0]).expect("json");
        assert_eq!(out.as_object().expect("object").len(), 5, "{out}");
    }
}
