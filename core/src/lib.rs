//! Shared K-ERP code: the domain rules that have no IO (voucher validation, the default chart of accounts,
//! token claims) and the small HTTP and telemetry helpers that both HTTP services use, so the binaries stay thin.

pub mod auth;
pub mod chart;
pub mod clickhouse;
pub mod cursor;
pub mod http;
pub mod insurance;
pub mod invoice;
pub mod kafka;
pub mod master;
pub mod openapi;
pub mod resident;
pub mod telemetry;
pub mod voucher;

/// A cancellation token that is cancelled when the process receives Ctrl-C or SIGTERM; binaries hand it to `run`.
#[must_use]
pub fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.cancel();
    });
    token
}

/// A future that completes when the process is asked to stop (Ctrl-C or SIGTERM).
///
/// Services take a cancellation token rather than this future, so tests can stop them without signals; binaries get
/// theirs from [`shutdown_on_signal`].
async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed we still want SIGTERM to work, so an error here just never resolves.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
