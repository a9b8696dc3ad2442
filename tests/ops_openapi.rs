//! The OpenAPI document: `GET /openapi.json` of a running chatgate equals
//! the checked-in `docs/openapi.json` (`CHATGATE_UPDATE_OPENAPI=1 cargo
//! test --test ops_openapi` renews it), it is OpenAPI 3.1, it describes
//! every operation the engine knows and every route the process serves,
//! and the refusals it promises as JSON are JSON.

mod support;

use chatgate::auth::Role;
use chatgate::engine::capabilities::OPERATIONS;
use serde_json::Value;
use support::*;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

async fn served(server: &TestServer) -> String {
    let resp = reqwest::get(server.url("/openapi.json")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    resp.text().await.unwrap()
}

#[tokio::test]
async fn the_served_document_is_the_checked_in_one() {
    let server = start(|_| {}).await;
    let served = served(&server).await;
    server.stop().await;
    if std::env::var_os("CHATGATE_UPDATE_OPENAPI").is_some() {
        std::fs::write(CHECKED_IN, &served).unwrap();
    }
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    assert!(
        served == checked_in,
        "docs/openapi.json is out of date: run `CHATGATE_UPDATE_OPENAPI=1 cargo test --test ops_openapi`"
    );
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_every_endpoint_and_scheme() {
    let doc: Value = serde_json::from_str(chatgate::openapi::document()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/upstream/events", "post"),
        ("/api/v2/me/facebooksessions/{id}", "post"),
        ("/api/v2/me/facebooksessions/{id}", "get"),
        ("/api/v2/me/facebooksession/{id}", "post"),
        ("/api/v2/me/facebooksessions", "get"),
        ("/api/v2/customer/sessions", "post"),
        ("/api/v2/customer/sessions/{id}", "post"),
        ("/api/v2/users", "get"),
        ("/api/v2/queues", "get"),
        ("/dev/token", "get"),
        ("/ws", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/api/v2/notifications", "post"),
        ("/api/v2/notifications", "get"),
        ("/api/v2/notifications/{kind}", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not described"
        );
    }
    let ws = &paths["/ws"]["get"]["responses"];
    for status in ["101", "401", "403"] {
        assert!(ws.get(status).is_some(), "/ws answers {status}");
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for role in ["agent", "customer", "supervisor", "service"] {
        assert_eq!(schemes[role]["scheme"], "bearer", "{role}");
        assert_eq!(schemes[role]["bearerFormat"], "JWT", "{role}");
    }
}

/// The names the body schema offers are exactly the operations the engine
/// parses: an operation added to one and not the other fails here.
#[test]
fn every_engine_operation_has_a_documented_body() {
    let doc: Value = serde_json::from_str(chatgate::openapi::document()).unwrap();
    let variants = doc["components"]["schemas"]["Operation"]["oneOf"]
        .as_array()
        .expect("Operation is a oneOf");
    let mut documented: Vec<&str> = variants
        .iter()
        .map(|v| {
            let name = find_operation_name(v).expect("each variant names its operationName");
            name
        })
        .collect();
    documented.sort_unstable();
    let mut known = OPERATIONS.to_vec();
    known.sort_unstable();
    assert_eq!(documented, known);
}

/// The one value of `operationName` in a variant (inline or in `allOf`).
fn find_operation_name(schema: &Value) -> Option<&str> {
    if let Some(values) = schema["properties"]["operationName"]["enum"].as_array() {
        return values.first().and_then(Value::as_str);
    }
    schema["allOf"]
        .as_array()?
        .iter()
        .find_map(find_operation_name)
}

/// Found by schemathesis: a bad query of `/dev/token` was answered in
/// plain text, though every refusal of the gateway is `{"error"}` JSON.
#[tokio::test]
async fn a_bad_dev_token_query_is_refused_in_json() {
    let server = start(|c| c.jwt_secret = None).await;
    for query in [
        "",
        "?role=pilot&sub=x",
        "?role=agent",
        "?role=agent&sub=x&ttl=-1",
    ] {
        let resp = reqwest::get(server.url(&format!("/dev/token{query}")))
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let body: Value = resp.json().await.expect("a JSON body");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{query}: {body}"
        );
    }
    let ok = reqwest::get(server.url("/dev/token?role=agent&sub=x"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    server.stop().await;
}

/// Found by schemathesis: a Bayeux reply echoes a numeric message id, which
/// the document first typed as a string only.
#[tokio::test]
async fn a_bayeux_reply_id_is_of_a_type_the_document_allows() {
    let doc: Value = serde_json::from_str(chatgate::openapi::document()).unwrap();
    let allowed = doc["components"]["schemas"]["BayeuxReply"]["properties"]["id"]["type"]
        .as_array()
        .unwrap()
        .clone();
    let server = start(|_| {}).await;
    for id in [serde_json::json!(0), serde_json::json!("a")] {
        let body = serde_json::json!([{"channel": "/chat/x", "id": id}]).to_string();
        let resp = reqwest::Client::new()
            .post(server.url("/api/v2/notifications"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let replies: Value = resp.json().await.unwrap();
        let echoed = &replies[0]["id"];
        assert_eq!(echoed, &id, "{replies}");
        let kind = if echoed.is_number() {
            "number"
        } else {
            "string"
        };
        assert!(
            allowed.contains(&Value::from(kind)),
            "{kind} not in {allowed:?}"
        );
    }
    server.stop().await;
}

/// Found by schemathesis: the `Idempotency-Key` header was documented as any
/// string (or null), so generators drew values no HTTP client can send and
/// that the ingest refuses; the document now says what the ingest checks.
/// Each key is sent: the ones the documented pattern matches are accepted,
/// the others refused with 400.
#[tokio::test]
async fn the_idempotency_key_is_documented_as_the_ingest_checks_it() {
    let doc: Value = serde_json::from_str(chatgate::openapi::document()).unwrap();
    let header = doc["paths"]["/upstream/events"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("the ingest documents its Idempotency-Key header")
        .clone();
    let schema = &header["schema"];
    assert_eq!(schema["type"], "string", "{header}");
    assert_eq!(schema["pattern"], "^[!-~]{1,128}$", "{header}");
    let server = start(|_| {}).await;
    let service = token(Role::Service, "upstream", None);
    let max = "k".repeat(128);
    let over = "k".repeat(129);
    // Each key, and whether the documented pattern admits it (202) or not (400).
    let keys = [
        ("a", 202),
        ("~!{}", 202),
        (max.as_str(), 202),
        ("", 400),
        ("a b", 400),
        (over.as_str(), 400),
        ("caf\u{e9}", 400),
    ];
    let body = serde_json::json!({
        "notificationType": "NewMessages",
        "messageType": "MessageLogUpdated",
        "facebooksessionPath": "/facebooksessions/idem",
        "messages": [],
    })
    .to_string();
    for (key, expected) in keys {
        let resp = reqwest::Client::new()
            .post(server.url("/upstream/events"))
            .bearer_auth(&service)
            .header("content-type", "application/json")
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes(key.as_bytes()).unwrap(),
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected, "key {key:?}");
    }
    server.stop().await;
}
