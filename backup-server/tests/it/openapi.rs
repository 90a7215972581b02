//! The OpenAPI document matches the real routes (both come from `routes::api`).

use std::collections::BTreeSet;

use axum::http::Method;

use crate::harness::{Auth, Harness, Kind};

#[tokio::test]
async fn the_document_lists_every_route_and_its_statuses() {
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let doc = h.get("/openapi.json", &Auth::None).await;
    assert_eq!(doc.status, 200);
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
    // The router and the document come from one declaration (`routes::api`): every
    // documented route is served, and a method the document does not name on one of its
    // paths is not.
    assert!(documented.len() >= 20, "{documented:?}");
    for (method, path) in &documented {
        let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let a = h.call(method.clone(), &concrete, &Auth::None, None).await;
        assert!(
            a.body["error"]["message"] != "no such route",
            "{method} {path} is not routed: {a:?}"
        );
    }
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        for method in ["get", "post", "patch", "delete", "put"] {
            if documented.contains(&(method.to_owned(), path.clone())) {
                continue;
            }
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let a = h.call(verb, &concrete, &Auth::None, None).await;
            assert_eq!(
                a.status, 405,
                "{method} {path} is served but not documented: {a:?}"
            );
        }
    }
}
