//! query-api's part of the public OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations.
//!
//! Every route is registered through `utoipa_axum`'s `OpenApiRouter` with `routes!`, so a route and its operation are
//! added by the same call; [`api_routes`] is the one list that both [`crate::router`] and [`openapi`] are built from.
//! query-api serves no document itself: nginx sends `/openapi.json` to ingest-api, which merges [`openapi`] into its
//! own (see `kerp_ingest::openapi`). The tests below prove that the live router serves exactly the documented routes.

use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Every public route of query-api with its operation.
pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(crate::routes::routes()).merge(crate::vat::routes())
}

/// query-api's operations (the reports and its own `/health`), with the shared rules of `kerp_core::openapi` applied.
/// The paths are query-api's own; nginx publishes its `/health` as `/query/health`, which the merging side renames.
#[must_use]
pub fn openapi() -> OpenApi {
    let (_, mut api) = api_routes().split_for_parts();
    kerp_core::openapi::finish(&mut api);
    api
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use clap::Parser;
    use tower::ServiceExt;

    use super::*;

    /// Every route query-api serves, as `(method, path)`. A route documented but missing here fails
    /// [`the_document_lists_these_routes`]; a route served but not documented (added outside `OpenApiRouter`, or a
    /// method added to a path with `.route`) fails [`the_live_router_serves_exactly_the_documented_routes`].
    const ROUTES: &[(&str, &str)] = &[
        ("GET", "/health"),
        ("GET", "/api/v1/reports/trial-balance"),
        ("GET", "/api/v1/reports/account-ledger"),
        ("GET", "/api/v1/reports/income-statement"),
        ("GET", "/api/v1/reports/balance-sheet"),
        ("GET", "/api/v1/reports/partner-ledger"),
        ("GET", "/api/v1/reports/vat-summary"),
    ];

    /// query-api's router with a ClickHouse client pointed at a port where nothing listens: the client connects only
    /// when asked, the routes answer 401 before any query, and `/health` answers 503.
    fn live_router() -> axum::Router {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: crate::Config,
        }
        let cli = Cli::parse_from([
            "query-api",
            "--jwt-secret",
            "route-coverage-test-secret-at-least-32-bytes",
            "--clickhouse-url",
            "http://127.0.0.1:1",
        ]);
        let ch = cli.config.clickhouse.client();
        crate::router(AppState { ch, config: std::sync::Arc::new(cli.config), balances: crate::balances::Reader::default(), answers: None })
    }

    async fn status(router: &axum::Router, path: &str) -> StatusCode {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        router.clone().oneshot(req).await.unwrap().status()
    }

    #[test]
    fn the_document_lists_these_routes() {
        let mut expected: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
        expected.sort();
        assert_eq!(kerp_core::openapi::documented_routes(&openapi()), expected);
    }

    #[tokio::test]
    async fn the_live_router_serves_exactly_the_documented_routes() {
        let router = live_router();
        let failures = kerp_core::openapi::route_coverage(router.clone(), &openapi(), str::to_owned).await;
        assert!(failures.is_empty(), "{failures:#?}");
        // The fallbacks themselves, so that the checks cannot pass by matching nothing.
        assert_eq!(status(&router, "/api/v1/reports/nothing-here").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&router, "/health").await, StatusCode::SERVICE_UNAVAILABLE);
    }
}
