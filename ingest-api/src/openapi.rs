//! The public OpenAPI 3.1 document, `GET /openapi.json`, generated from the handlers' `#[utoipa::path]` annotations,
//! and its browsable view, `GET /docs` (RapiDoc, vendored in `assets/`).
//!
//! Every route of ingest-api is registered through `utoipa_axum`'s `OpenApiRouter` with `routes!`, so a route and its
//! operation are added by the same call and cannot drift apart; [`api_routes`] is the one list both [`crate::router`]
//! and [`openapi`] are built from, and the tests below prove that the live router serves exactly the documented
//! routes.
//!
//! Why ingest-api serves the whole API's document: nginx sends `/api/v1/reports/*` to query-api and everything else
//! (`/openapi.json` and `/docs` included) to ingest-api, so one process must answer with the combined document.
//! ingest-api links the `kerp-query` library and merges `kerp_query::openapi()` into its own at start, rather than
//! fetching query-api's document over HTTP: the merge then needs no running query-api (the docs stay up while it
//! restarts), costs nothing per request, and both halves come from the same commit, as both binaries are built from
//! one workspace and deployed together.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// What the document says about the API as a whole; the operations come from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "K-ERP API",
        description = "The accounting core of a Korean-market ERP: vouchers (전표), tax invoices (세금계산서), master data \
                       and reports (시산표, ledgers, 손익계산서, 재무상태표, VAT summary), behind one base URL.\n\n\
                       Every `/api/v1` call needs `Authorization: Bearer <token>` and acts inside the token's company. \
                       Success answers are `{\"data\": …}`; lists are `{\"data\": [...], \"pagination\": {\"page\", \
                       \"page_size\", \"total\"}}`. **Every error is an RFC 9457 problem document served as \
                       `application/problem+json`** whose `type` is one of the stable URIs of the `Problem` schema \
                       (https://kerp.dev/problems/…): branch on it, never on `detail`. Unknown routes answer a 404 and \
                       unknown methods a 405 problem document too.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "vouchers", description = "Vouchers (전표) and their lifecycle: drafts, approval, reversal"),
        (name = "periods", description = "Closing and reopening months"),
        (name = "accounts", description = "The chart of accounts"),
        (name = "partners", description = "Partners (거래처)"),
        (name = "departments", description = "Departments"),
        (name = "users", description = "Users and their tokens"),
        (name = "company", description = "The company's settings"),
        (name = "invoices", description = "Tax invoices (세금계산서)"),
        (name = "reports", description = "Reports from ClickHouse, served by query-api: trial balance, ledgers, statements, VAT"),
        (name = "health", description = "Liveness of each service"),
        (name = "documentation", description = "This document and its browsable view"),
    )
)]
struct ApiDoc;

/// Every public route of ingest-api with its operation. [`crate::router`] serves its routes, [`openapi`] documents
/// them: nothing is served that is not documented.
pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .merge(crate::routes::routes())
        .merge(crate::master::routes())
        .merge(crate::invoices::routes())
        .routes(routes!(openapi_json))
        .routes(routes!(docs))
        .routes(routes!(docs_script))
}

/// Where nginx publishes query-api's `/health`.
pub const QUERY_HEALTH_PATH: &str = "/query/health";

/// ingest-api's own operations, with the shared rules of `kerp_core::openapi` applied.
fn ingest_openapi() -> OpenApi {
    let (_, mut api) = api_routes().split_for_parts();
    kerp_core::openapi::finish(&mut api);
    api
}

/// query-api's operations under their public paths: its `/health` is `/query/health` behind nginx, with an operation id
/// of its own so that the ids stay unique.
fn query_openapi() -> OpenApi {
    let mut api = kerp_query::openapi();
    if let Some(mut item) = api.paths.paths.remove("/health") {
        for (_, op) in kerp_core::openapi::operations_mut(&mut item) {
            op.operation_id = Some("query_health".to_owned());
        }
        api.paths.paths.insert(QUERY_HEALTH_PATH.to_owned(), item);
    }
    api
}

/// The document of the whole public API, as nginx routes it: ingest-api's operations and query-api's.
#[must_use]
pub fn openapi() -> OpenApi {
    let mut api = ingest_openapi();
    api.merge(query_openapi());
    api
}

/// The document as served, built once.
static OPENAPI_JSON: LazyLock<String> =
    LazyLock::new(|| openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"the document did not serialise: {e}\"}}")));

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "documentation",
    responses((status = 200, description = "The OpenAPI 3.1 document of the whole public API", content_type = "application/json",
               body = Object)))]
async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON.as_str())
}

/// The browsable view's page: RapiDoc reading `/openapi.json`.
const DOCS_HTML: &str = include_str!("../assets/docs.html");

/// RapiDoc 9.3.8 (MIT), vendored in `assets/` with its licences, so that the docs load nothing from a CDN.
const RAPIDOC_JS: &[u8] = include_bytes!("../assets/rapidoc-min.js");

/// How long a browser may keep the RapiDoc script, in seconds: it changes only with a new build.
const DOCS_SCRIPT_MAX_AGE_SECONDS: u32 = 86_400;

/// A browsable view of this document, served from this server alone.
#[utoipa::path(get, path = "/docs", tag = "documentation",
    responses((status = 200, description = "An HTML page that renders `/openapi.json` with RapiDoc", content_type = "text/html",
               body = String)))]
async fn docs() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], DOCS_HTML)
}

/// The script of the browsable view.
#[utoipa::path(get, path = "/docs/rapidoc-min.js", tag = "documentation",
    responses((status = 200, description = "RapiDoc 9.3.8 (MIT)", content_type = "text/javascript", body = String)))]
async fn docs_script() -> impl IntoResponse {
    let cache = format!("public, max-age={DOCS_SCRIPT_MAX_AGE_SECONDS}");
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8".to_owned()), (header::CACHE_CONTROL, cache)], RAPIDOC_JS)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use clap::Parser;
    use tower::ServiceExt;

    use super::*;

    /// Whether a documented path needs a bearer token (see `kerp_core::openapi::finish`).
    fn authenticated(path: &str) -> bool {
        path.starts_with(kerp_core::openapi::AUTHENTICATED_PREFIX)
    }

    /// Every route ingest-api serves, as `(method, path)`. A route documented but missing here fails
    /// [`the_document_lists_these_routes`]; a route served but not documented (added outside `OpenApiRouter`, or a
    /// method added to a path with `.route`) fails [`the_live_router_serves_exactly_the_documented_routes`].
    const ROUTES: &[(&str, &str)] = &[
        ("GET", "/health"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/rapidoc-min.js"),
        ("GET", "/api/v1/vouchers"),
        ("POST", "/api/v1/vouchers"),
        ("GET", "/api/v1/vouchers/{id}"),
        ("PUT", "/api/v1/vouchers/{id}"),
        ("DELETE", "/api/v1/vouchers/{id}"),
        ("POST", "/api/v1/vouchers/{id}/approve"),
        ("POST", "/api/v1/vouchers/{id}/reverse"),
        ("GET", "/api/v1/periods"),
        ("POST", "/api/v1/periods/{period}/close"),
        ("POST", "/api/v1/periods/{period}/reopen"),
        ("GET", "/api/v1/accounts"),
        ("POST", "/api/v1/accounts"),
        ("GET", "/api/v1/accounts/{id}"),
        ("PATCH", "/api/v1/accounts/{id}"),
        ("GET", "/api/v1/partners"),
        ("POST", "/api/v1/partners"),
        ("GET", "/api/v1/partners/{id}"),
        ("PUT", "/api/v1/partners/{id}"),
        ("POST", "/api/v1/partners/{id}/deactivate"),
        ("POST", "/api/v1/partners/{id}/activate"),
        ("GET", "/api/v1/departments"),
        ("POST", "/api/v1/departments"),
        ("GET", "/api/v1/departments/{id}"),
        ("PUT", "/api/v1/departments/{id}"),
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users/{id}"),
        ("PUT", "/api/v1/users/{id}"),
        ("POST", "/api/v1/users/{id}/token"),
        ("GET", "/api/v1/company"),
        ("PATCH", "/api/v1/company"),
        ("GET", "/api/v1/invoices"),
        ("POST", "/api/v1/invoices"),
        ("GET", "/api/v1/invoices/{id}"),
        ("PUT", "/api/v1/invoices/{id}"),
        ("POST", "/api/v1/invoices/{id}/issue"),
        ("POST", "/api/v1/invoices/{id}/cancel"),
        ("PUT", "/api/v1/invoices/{id}/approval-number"),
    ];

    /// ingest-api's router with a pool that connects only when asked, to a port where nothing listens: the routes
    /// answer without a database, and `/health` answers 503.
    fn live_router() -> axum::Router {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: crate::Config,
        }
        let cli = Cli::parse_from(["ingest-api", "--jwt-secret", "route-coverage-test-secret-at-least-32-bytes"]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_millis(crate::DB_ACQUIRE_MS_MAX))
            .connect_lazy("postgres://kerp:kerp@127.0.0.1:1/kerp")
            .expect("a lazy pool parses its URL only");
        {
            let poster = crate::group_commit::Poster::start(pool.clone(), cli.config.voucher_topic.clone(), 1);
            crate::router(AppState {
                pool,
                config: std::sync::Arc::new(cli.config),
                poster,
                partners: crate::partner_cache::PartnerCache::default(),
            })
        }
    }

    /// A concrete URI for a path template.
    fn concrete(path: &str) -> String {
        path.replace("{id}", "00000000-0000-4000-8000-000000000001").replace("{period}", "2025-03")
    }

    async fn status(router: &axum::Router, path: &str) -> StatusCode {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        router.clone().oneshot(req).await.unwrap().status()
    }

    #[test]
    fn the_document_lists_these_routes() {
        let mut expected: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
        expected.sort();
        assert_eq!(kerp_core::openapi::documented_routes(&ingest_openapi()), expected);
    }

    /// The public document is ingest-api's operations and query-api's (whose own tests check its routes), nothing
    /// more, and merging them loses nothing: a schema or response name that both use means the same thing, and
    /// every operation id is unique.
    #[test]
    fn the_public_document_is_both_services_merged_without_loss() {
        let (ingest, query, public) = (ingest_openapi(), query_openapi(), openapi());
        let mut expected = kerp_core::openapi::documented_routes(&ingest);
        expected.extend(kerp_core::openapi::documented_routes(&query));
        expected.sort();
        assert_eq!(kerp_core::openapi::documented_routes(&public), expected);
        assert!(expected.contains(&("GET".to_owned(), QUERY_HEALTH_PATH.to_owned())));
        assert!(expected.contains(&("GET".to_owned(), "/api/v1/reports/vat-summary".to_owned())));
        let (a, b) = (ingest.components.unwrap(), query.components.unwrap());
        for (name, schema) in &b.schemas {
            if let Some(other) = a.schemas.get(name) {
                assert_eq!(serde_json::to_value(other).unwrap(), serde_json::to_value(schema).unwrap(), "schema {name}");
            }
        }
        for (name, response) in &b.responses {
            if let Some(other) = a.responses.get(name) {
                assert_eq!(serde_json::to_value(other).unwrap(), serde_json::to_value(response).unwrap(), "response {name}");
            }
        }
        let doc = serde_json::to_value(&public).unwrap();
        let mut ids = std::collections::BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(ids.insert(id.clone()), "operation id {id} twice");
            }
        }
    }

    #[tokio::test]
    async fn the_live_router_serves_exactly_the_documented_routes() {
        let router = live_router();
        let failures = kerp_core::openapi::route_coverage(router.clone(), &ingest_openapi(), concrete).await;
        assert!(failures.is_empty(), "{failures:#?}");
        // The fallbacks themselves, so that the checks cannot pass by matching nothing.
        assert_eq!(status(&router, "/api/v1/nothing-here").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&router, "/health").await, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn the_docs_page_and_its_script_come_from_this_server() {
        let router = live_router();
        let get = |path: &'static str| {
            let router = router.clone();
            async move {
                let res = router.oneshot(Request::builder().uri(path).body(Body::empty()).unwrap()).await.unwrap();
                let kind = res.headers()[axum::http::header::CONTENT_TYPE].to_str().unwrap().to_owned();
                (res.status(), kind, axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap())
            }
        };
        let (status, kind, page) = get("/docs").await;
        assert_eq!((status, kind.as_str()), (StatusCode::OK, "text/html; charset=utf-8"));
        let page = String::from_utf8(page.to_vec()).unwrap();
        assert!(page.contains(r#"spec-url="/openapi.json""#) && page.contains(r#"src="/docs/rapidoc-min.js""#));
        assert!(!page.contains("https://"), "the page loads nothing from elsewhere");
        let (status, kind, script) = get("/docs/rapidoc-min.js").await;
        assert_eq!((status, kind.as_str()), (StatusCode::OK, "text/javascript; charset=utf-8"));
        assert_eq!(script.len(), RAPIDOC_JS.len());
        let (status, kind, _) = get("/openapi.json").await;
        assert_eq!((status, kind.as_str()), (StatusCode::OK, "application/json"));
    }

    #[test]
    fn the_document_is_openapi_3_1_with_problem_errors_and_the_bearer_scheme() {
        let doc: serde_json::Value = serde_json::from_str(&OPENAPI_JSON).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        let types = doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"].as_array().unwrap();
        assert_eq!(types.len(), kerp_core::http::PROBLEM_TYPES.len());
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        let target = response["$ref"].as_str().unwrap_or_default();
                        assert!(target.starts_with("#/components/responses/"), "{method} {path} {status} is not a problem response");
                    }
                }
                if authenticated(path) {
                    assert_eq!(op["security"][0]["bearer"], serde_json::json!([]), "{method} {path}");
                }
            }
        }
    }
}
