//! The OpenAPI pieces that ingest-api and query-api share: the problem+json error responses (one reusable response
//! per kind of error, each naming its stable `type` URI and referring to the [`Problem`] schema), the bearer security
//! scheme, and [`finish`], which applies the rules every route of both services follows.
//!
//! The handlers' `#[utoipa::path]` annotations describe what is particular to each route (its parameters, body,
//! success answer and the errors only it gives). What every route has in common comes from the extractors, so it is
//! added here by rule rather than repeated on each handler: a route under `/api/v1/` takes [`crate::http::Auth`] and so
//! needs the bearer token and may answer 401; a route with a JSON body reads it with [`crate::http::JsonBody`] (or a
//! variant of it) and so may answer 400, 413, 415 and 422; any route may answer 500. The route-coverage tests of both
//! services check the 401 rule against the live routers.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{Method, StatusCode};
use tower::ServiceExt;

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::http::{Problem, PROBLEM_TYPES};

/// The name of the bearer security scheme in `components.securitySchemes`.
pub const BEARER_SCHEME: &str = "bearer";

/// The media type of every error answer (RFC 9457).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// The routes that need a bearer token start with this.
pub const AUTHENTICATED_PREFIX: &str = "/api/v1/";

/// The schema of [`Problem::kind`]: one of the stable type URIs of `docs/errors.md`.
#[must_use]
pub fn problem_type_schema() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("uri".to_owned())))
        .enum_values(Some(PROBLEM_TYPES.iter().map(|(_, uri)| *uri)))
        .description(Some("The stable kind of the error (see docs/errors.md); branch on it or on `status`, never on `detail`."))
        .build()
}

/// A reusable problem+json response for `status`, described with its type URI.
fn problem_response(status: u16, when: &str) -> Response {
    let uri = PROBLEM_TYPES.iter().find(|(s, _)| *s == status).map_or("about:blank", |(_, uri)| *uri);
    let mut builder = ResponseBuilder::new().description(format!("{when}. A problem document with `type` {uri}.")).content(
        PROBLEM_CONTENT_TYPE,
        ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(Problem::name())))).build(),
    );
    if status == 401 {
        let header =
            HeaderBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::String).build())).description(Some("`Bearer`"));
        builder = builder.header("WWW-Authenticate", header.build());
    }
    if status == 503 {
        let header = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).build()))
            .description(Some("Seconds to wait before the same request (with the same `Idempotency-Key`) is sent again"));
        builder = builder.header("Retry-After", header.build());
    }
    builder.build()
}

/// Declares a unit type per kind of error that implements [`utoipa::ToResponse`], so that a handler's annotation can
/// say `(status = 404, response = NotFound)`, and lists them all for [`finish`] to put in `components.responses`.
macro_rules! problem_responses {
    ($($name:ident => $status:literal, $when:literal;)*) => {
        $(
            #[doc = concat!("The reusable `", stringify!($status), "` problem response: ", $when, ".")]
            pub struct $name;

            impl<'r> utoipa::ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), RefOr::T(problem_response($status, $when)))
                }
            }
        )*

        /// Every reusable problem response, by component name.
        fn problem_response_components() -> Vec<(&'static str, Response)> {
            vec![$((stringify!($name), problem_response($status, $when))),*]
        }
    };
}

problem_responses! {
    BadRequest => 400, "Malformed: JSON that does not parse, a body left out, a query parameter that does not read";
    Unauthorized => 401, "No bearer token, or one that is invalid, expired or not for this API";
    Forbidden => 403, "The token's role may not do this";
    NotFound => 404, "No such object in the token's company (an id that is not a UUID names none either)";
    Conflict => 409, "The object's state refuses the change";
    PayloadTooLarge => 413, "A body over 1 MiB";
    UnsupportedMediaType => 415, "A body that is not application/json";
    Unprocessable => 422, "JSON of the right shape that breaks a rule; `errors` names every offending field";
    Unavailable => 503, "The database cannot answer in time; retry";
    Internal => 500, "A bug: the cause is logged with the request id and never sent";
}

/// Every operation of a path item, with its method in lower case as OpenAPI and axum's `Debug` spell it.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

/// Every documented `(method, path)` of `api`, sorted, methods in upper case.
#[must_use]
pub fn documented_routes(api: &OpenApi) -> Vec<(String, String)> {
    let mut paths = api.paths.clone();
    let mut routes: Vec<(String, String)> = paths
        .paths
        .iter_mut()
        .flat_map(|(path, item)| operations_mut(item).map(move |(method, _)| (method.to_uppercase(), path.clone())).collect::<Vec<_>>())
        .collect();
    routes.sort();
    routes
}

/// The methods [`route_coverage`] probes every live path with: those the API could plausibly serve. HEAD follows GET
/// in axum, and OPTIONS and TRACE are served by nothing, so they would add no information.
const PROBED_METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

/// The paths a router matches, read from its `Debug` output (axum has no other way to list them): the `path_router`
/// part names each as `RouteId(n): "/path"`; the fallback router after it holds no route of the API.
#[must_use]
pub fn router_paths(router: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let routes = debug.split("fallback_router").next().unwrap_or_default();
    routes
        .split("RouteId(")
        .skip(1)
        .filter_map(|piece| piece.split_once("): \"").and_then(|(_, rest)| rest.split_once('"')).map(|(path, _)| path.to_owned()))
        .collect()
}

/// Checks that `router` serves exactly the routes `api` documents, and returns what differs (empty when nothing
/// does). The paths come from the router itself ([`router_paths`]); each is then requested without a token with every
/// method of [`PROBED_METHODS`] (its parameters filled in by `concrete`): a documented method must be answered by its
/// handler, not by the 404 or 405 fallback of [`crate::http::tracked`], and under [`AUTHENTICATED_PREFIX`] with a 401;
/// any other method must get the 405 fallback.
pub async fn route_coverage(router: axum::Router, api: &OpenApi, concrete: impl Fn(&str) -> String) -> Vec<String> {
    let documented = documented_routes(api);
    let documented_paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();
    let live = router_paths(&router);
    let mut failures = Vec::new();
    if live.is_empty() {
        failures.push("no path read from the router's Debug output; has axum changed its format?".to_owned());
    }
    for path in live.symmetric_difference(&documented_paths) {
        let side = if live.contains(path) { "served but not documented" } else { "documented but not served" };
        failures.push(format!("{path}: {side}"));
    }
    for path in live.intersection(&documented_paths) {
        for method in PROBED_METHODS {
            let is_documented = documented.iter().any(|(m, p)| m == method.as_str() && p == path);
            let req = axum::http::Request::builder().method(method.clone()).uri(concrete(path)).body(axum::body::Body::empty());
            let res = match req {
                Ok(req) => router.clone().oneshot(req).await.unwrap_or_else(|never| match never {}),
                Err(e) => {
                    failures.push(format!("{method} {path}: no request could be built: {e}"));
                    continue;
                }
            };
            let status = res.status();
            let body = axum::body::to_bytes(res.into_body(), crate::http::BODY_BYTES_MAX).await.unwrap_or_default();
            let body = String::from_utf8_lossy(&body);
            let fallback = status == StatusCode::METHOD_NOT_ALLOWED || body.contains("\"no such route\"");
            if is_documented && fallback {
                failures.push(format!("{method} {path} is documented but the router's fallback answered {status}: {body}"));
            } else if is_documented && path.starts_with(AUTHENTICATED_PREFIX) && status != StatusCode::UNAUTHORIZED {
                failures.push(format!("{method} {path} without a token answered {status}, not 401: {body}"));
            } else if !is_documented && status != StatusCode::METHOD_NOT_ALLOWED {
                failures.push(format!("{method} {path} is not documented but answered {status}: {body}"));
            }
        }
    }
    failures
}

/// Adds `response` under `status` unless the handler's annotation already documents that status.
fn add_response(op: &mut Operation, status: &str, response: &str) {
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::Ref(utoipa::openapi::Ref::new(format!("#/components/responses/{response}"))));
}

/// An optional body (`Option<T>` in an annotation) is documented by utoipa as "T or null"; but a client leaves such a
/// body out, and a JSON `null` is not a T. This keeps the T: the body's `required: false` already says it may be
/// left out.
fn optional_body_is_not_null(op: &mut Operation) {
    let Some(RefOr::T(body)) = op.request_body.as_mut() else { return };
    if body.required == Some(utoipa::openapi::Required::True) {
        return;
    }
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else { continue };
        let Some(schema) = content.schema.as_mut() else { continue };
        let Ok(mut json) = serde_json::to_value(&*schema) else { continue };
        if let Some(kept) = json["oneOf"].as_array().and_then(|alternatives| {
            let rest: Vec<_> = alternatives.iter().filter(|a| a["type"] != "null").cloned().collect();
            (rest.len() == 1).then(|| rest[0].clone())
        }) {
            json = kept;
        } else if let Some(types) = json["type"].as_array() {
            let rest: Vec<_> = types.iter().filter(|t| *t != "null").cloned().collect();
            json["type"] = if rest.len() == 1 { rest[0].clone() } else { serde_json::Value::Array(rest) };
        }
        if let Ok(stripped) = serde_json::from_value(json) {
            *schema = stripped;
        }
    }
}

/// Adds what every route of both services has in common (see the module's documentation): the Problem schemas and
/// responses, the bearer scheme, and on each operation its security and the errors its extractors give.
pub fn finish(api: &mut OpenApi) {
    let components = api.components.get_or_insert_with(Default::default);
    let mut schemas = vec![(Problem::name().into_owned(), Problem::schema())];
    Problem::schemas(&mut schemas);
    components.schemas.extend(schemas);
    let responses: BTreeMap<String, RefOr<Response>> =
        problem_response_components().into_iter().map(|(name, r)| (name.to_owned(), RefOr::T(r))).collect();
    components.responses.extend(responses);
    components.security_schemes.insert(
        BEARER_SCHEME.to_owned(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An HS256 JWT with `iss` = `kerp`, `aud` = `kerp-api`, the user, the company and the role, living at most a day; \
                     `compose/dev token` prints one on a dev stack.",
                ))
                .build(),
        )),
    );
    for (path, item) in &mut api.paths.paths {
        let authenticated = path.starts_with(AUTHENTICATED_PREFIX);
        for (_, op) in operations_mut(item) {
            if authenticated {
                op.security = Some(vec![SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new())]);
                add_response(op, "401", "Unauthorized");
            }
            if op.request_body.is_some() {
                optional_body_is_not_null(op);
                add_response(op, "400", "BadRequest");
                add_response(op, "413", "PayloadTooLarge");
                add_response(op, "415", "UnsupportedMediaType");
                add_response(op, "422", "Unprocessable");
            }
            add_response(op, "500", "Internal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_type_is_in_the_schema_and_has_a_response() {
        let schema = serde_json::to_value(problem_type_schema()).unwrap();
        let listed: Vec<&str> = schema["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for (status, uri) in PROBLEM_TYPES {
            assert!(listed.contains(uri), "{status}");
        }
        let statuses: Vec<u16> = problem_response_components()
            .iter()
            .map(|(name, _)| match *name {
                "BadRequest" => 400,
                "Unauthorized" => 401,
                "Forbidden" => 403,
                "NotFound" => 404,
                "Conflict" => 409,
                "PayloadTooLarge" => 413,
                "UnsupportedMediaType" => 415,
                "Unprocessable" => 422,
                "Unavailable" => 503,
                "Internal" => 500,
                other => panic!("{other}"),
            })
            .collect();
        // 405 is the router's answer to an undocumented method, so no documented operation gives it.
        for (status, _) in PROBLEM_TYPES.iter().filter(|(s, _)| *s != 405) {
            assert!(statuses.contains(status), "{status} has no reusable response");
        }
    }
}
