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
                for status in ["401", "429"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} declares {status} (any credentials can meet the \
                         per-address limit)"
                    );
                }
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

#[tokio::test]
async fn descriptions_speak_the_apis_words_and_numbers_declare_their_ranges() {
    let doc = serde_json::to_value(backup_server::openapi()).expect("json");
    let mut texts = Vec::new();
    collect_descriptions(&doc, &mut texts);
    assert!(texts.len() > 100, "{}", texts.len());
    for text in &texts {
        for rust in ["[`", "`None`", "Some(", "Option<", "Self::", "::"] {
            assert!(!text.contains(rust), "{rust:?} in the description {text:?}");
        }
    }
    // A number whose description gives a range "(a-b" declares it as minimum and maximum.
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        for (field, property) in schema["properties"].as_object().into_iter().flatten() {
            let description = property["description"].as_str().unwrap_or_default();
            let numeric = property["type"].to_string().contains("integer");
            let Some((low, high)) = range_in(description).filter(|_| numeric) else {
                continue;
            };
            assert_eq!(
                (property["minimum"].as_i64(), property["maximum"].as_i64()),
                (Some(low), Some(high)),
                "{name}.{field}: {description}"
            );
        }
    }
}

fn collect_descriptions(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                if let ("description" | "summary", Some(text)) = (key.as_str(), v.as_str()) {
                    into.push(text.to_owned());
                }
                collect_descriptions(v, into);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_descriptions(v, into)),
        _ => {}
    }
}

/// The first "(low-high" of a description, if it has one.
fn range_in(text: &str) -> Option<(i64, i64)> {
    let start = text.find('(')? + 1;
    let (low, rest) = text[start..].split_once('-')?;
    let high: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((low.parse().ok()?, high.parse().ok()?))
}
