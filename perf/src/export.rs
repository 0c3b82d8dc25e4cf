//! Placeholder: being written.

/// Arguments (being written).
#[derive(clap::Args)]
pub struct ExportArgs {}

/// Not written yet.
///
/// # Errors
/// Always.
#[allow(clippy::unused_async)]
pub async fn run(_args: &ExportArgs) -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}
