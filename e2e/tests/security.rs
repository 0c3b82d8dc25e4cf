//! The security review's points, against the real services: tokens with the wrong issuer, audience or an over-long
//! lifetime are refused by both APIs.

mod common;

use common::{company, get, pg, stack, Svc, SECRET};
use kerp_core::auth::{Claims, Role, TOKEN_TTL_SECONDS_MAX};

/// Signs claims as they are, without `kerp_core::auth::issue`'s lifetime check, as a forger with the secret could.
fn sign_raw(claims: &serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), claims, &key).expect("sign")
}

#[tokio::test]
async fn tokens_with_a_wrong_issuer_audience_or_lifetime_get_401() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let good = Claims::new(c.admin, c.id, Role::Admin, 600);
    let issue = |claims: &Claims| kerp_core::auth::issue(SECRET.as_bytes(), claims).expect("issue");

    let mut over_long = serde_json::to_value(&good).expect("claims");
    over_long["exp"] = (good.iat + TOKEN_TTL_SECONDS_MAX + 1).into();
    let mut without_iat = serde_json::to_value(&good).expect("claims");
    without_iat.as_object_mut().expect("object").remove("iat");
    let cases = [
        ("wrong issuer", issue(&Claims { iss: "not-kerp".into(), ..good.clone() })),
        ("wrong audience", issue(&Claims { aud: "another-api".into(), ..good.clone() })),
        ("lifetime over TOKEN_TTL_SECONDS_MAX", sign_raw(&over_long)),
        ("no iat", sign_raw(&without_iat)),
    ];
    let year = chrono::Utc::now().format("%Y");
    let report = format!("/api/v1/reports/trial-balance?year={year}&month=1");
    for (svc, path) in [(Svc::Ingest, "/api/v1/accounts"), (Svc::Query, report.as_str())] {
        for (what, token) in &cases {
            let (status, body) = get(svc, token, path).await;
            assert_eq!(status, 401, "{svc:?} {path}: a token with {what} got {status}: {body}");
        }
        let (status, body) = get(svc, &issue(&good), path).await;
        assert_eq!(status, 200, "{svc:?} {path}: a good token got {status}: {body}");
    }
}
