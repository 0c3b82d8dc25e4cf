//! Placeholder: being written.

/// Arguments (being written).
#[derive(clap::Args)]
pub struct GrpcLoadArgs {}

/// Not written yet.
///
/// # Errors
/// Always.
#[allow(clippy::unused_async)]
pub async fn run(_args: &GrpcLoadArgs) -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}
