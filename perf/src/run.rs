//! Placeholder: being written.

/// Arguments (being written).
#[derive(clap::Args)]
pub struct RunArgs {}

/// Not written yet.
///
/// # Errors
/// Always.
#[allow(clippy::unused_async)]
pub async fn run(_args: &RunArgs) -> anyhow::Result<bool> {
    anyhow::bail!("not written yet")
}
