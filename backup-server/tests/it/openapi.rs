//! The OpenAPI document matches the real routes.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};

use crate::harness::{Auth, Harness, Kind};

/// Every (method, path) the router serves, as DESIGN §3 and the operational endpoints list them.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/tenants"),
    ("post", "/token/rotate"),
    ("post", "/agents"),
    ("get", "/agents"),
    ("get", "/agents/{id}"),
    ("delete", "/agents/{id}"),
    ("patch", "/agents/{id}/settings"),
    ("post", "/agents/{id}/token"),
    ("post", "/agents/{id}/heartbeat"),
    ("post", "/agents/{id}/tasks/claim"),
    ("get", "/tasks"),
    ("get", "/tasks/{id}"),
    ("post", "/tasks/{id}/start"),
    ("post", "/tasks/{id}/result"),
    ("post", "/tasks/{id}/cancel"),
    ("post", "/policies"),
    ("get", "/policies"),
    ("get", "/policies/{id}"),
    ("patch", "/policies/{id}"),
    ("delete", "/policies/{id}"),
    ("post", "/policies/{id}/run"),
    ("get", "/backup-runs"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

#[tokio::test]
async fn the_document_lists_every_route_and_its_statuses() {
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let doc = h.get("/openapi.json", &Auth::None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            documented.insert((method.clone(), path.clone()));
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                !responses.is_empty(),
                "{method} {path} declares its statuses"
            );
            for status in ["408", "413"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} declares {status}, which any route can answer"
                );
            }
            let secured = op.get("security").is_some();
            if secured {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} declares 401"
                );
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);
    // And every documented route is really served (not the 404 fallback).
    for (method, path) in ROUTES {
        let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let a = h.call(method.clone(), &concrete, &Auth::None, None).await;
        assert!(
            a.body["error"]["message"] != "no such route",
            "{method} {path} is not routed: {a:?}"
        );
    }
}
