//! The snapshot routes: the agent's report (tolerant, replacing) and the tenant's list (strict).

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Auth, Harness, TestAgent, backup_policy, server_test};

fn entry(hex: &str, minute: u32, tags: Value) -> Value {
    json!({
        "id": hex.repeat(64 / hex.len()),
        "time": format!("2026-03-01T00:{minute:02}:00Z"),
        "hostname": "db-1",
        "paths": ["/srv"],
        "tags": tags,
        "futureField": {"kept": "ignored"},
    })
}

async fn report(h: &Harness, agent: &TestAgent, repository: &str, list: Value) -> Value {
    let answer = h
        .call(
            Method::PUT,
            &format!("/agents/{}/repositories/{repository}/snapshots", agent.id),
            &agent.auth(),
            Some(json!({ "snapshots": list })),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

server_test!(
    a_report_replaces_the_list_and_the_tenant_reads_it,
    |h| async move {
        let t = h.tenant("acme").await;
        let auth = Auth::tenant(&t);
        let agent = h.agent(&t, "db-1").await;
        let p = h.policy(&t, backup_policy(agent.id)).await;
        let policy = p["id"].as_str().expect("id");
        let tags = json!([format!("policy:{policy}"), "task:1"]);
        let stored = report(
            &h,
            &agent,
            "main",
            json!([
                entry("a1", 1, tags.clone()),
                entry("b2", 2, tags.clone()),
                entry("c3", 3, json!([]))
            ]),
        )
        .await;
        assert_eq!(stored, json!({"stored": 3, "truncated": false}));

        let listed = h.get("/snapshots", &auth).await;
        assert_eq!(listed.status, 200, "{listed:?}");
        let items = listed.body["items"].as_array().expect("items").clone();
        let short: Vec<&str> = items
            .iter()
            .map(|s| s["shortId"].as_str().expect("id"))
            .collect();
        assert_eq!(short, ["c3c3c3c3", "b2b2b2b2", "a1a1a1a1"], "newest first");
        assert_eq!(items[1]["policyId"], policy);
        assert_eq!(items[0]["policyId"], Value::Null);
        assert_eq!(items[1]["repository"], "main");
        assert_eq!(items[1]["agentId"], agent.id.to_string());
        assert_eq!(items[1]["time"], "2026-03-01T00:02:00Z");
        let by_policy = h
            .get(&format!("/snapshots?policyId={policy}&limit=1"), &auth)
            .await;
        assert_eq!(by_policy.body["items"][0]["shortId"], "b2b2b2b2");
        assert!(
            by_policy.body["nextCursor"].is_string(),
            "{}",
            by_policy.body
        );

        // A prune forgot two; the next report says so.
        report(&h, &agent, "main", json!([entry("c3", 3, json!([]))])).await;
        let after = h
            .get(
                &format!("/snapshots?agentId={}&repository=main", agent.id),
                &auth,
            )
            .await;
        assert_eq!(
            after.body["items"].as_array().map(Vec::len),
            Some(1),
            "{}",
            after.body
        );
        let other_repository = h.get("/snapshots?repository=offsite", &auth).await;
        assert_eq!(other_repository.body["items"], json!([]));
    }
);

server_test!(
    a_bad_report_is_cleaned_or_refused_by_name_never_500,
    |h| async move {
        let t = h.tenant("acme").await;
        let agent = h.agent(&t, "db-1").await;
        // Entries restic could not have made are dropped, not refused (the agent cannot fix them).
        let stored = report(
            &h,
            &agent,
            "main",
            json!([{"id": "zz", "time": "2026-03-01T00:00:00Z"}, entry("d4", 4, json!(["nul\u{0}tag"]))]),
        )
        .await;
        assert_eq!(stored["stored"], 1);
        let path = |name: &str| format!("/agents/{}/repositories/{name}/snapshots", agent.id);
        let bad_name = h
            .call(
                Method::PUT,
                &path("no%20spaces"),
                &agent.auth(),
                Some(json!({"snapshots": []})),
            )
            .await;
        assert_eq!(
            (bad_name.status, bad_name.field()),
            (422, "repository"),
            "{bad_name:?}"
        );
        let bad_type = h
            .call(
                Method::PUT,
                &path("main"),
                &agent.auth(),
                Some(json!({"snapshots": 5})),
            )
            .await;
        assert_eq!(bad_type.status, 422, "{bad_type:?}");
        let other = h.agent(&t, "db-2").await;
        let not_yours = h
            .call(
                Method::PUT,
                &path("main"),
                &other.auth(),
                Some(json!({"snapshots": []})),
            )
            .await;
        assert_eq!(not_yours.status, 404, "{not_yours:?}");

        let auth = Auth::tenant(&t);
        for (query, field) in [
            ("repository=a/b", "repository"),
            ("agentId=nope", "agentId"),
            ("limit=0", "limit"),
            ("cursor=zz", "cursor"),
            ("hostname=x", "hostname"),
        ] {
            let answer = h.get(&format!("/snapshots?{query}"), &auth).await;
            assert_eq!(
                (answer.status, answer.field()),
                (422, field),
                "{query}: {answer:?}"
            );
        }
    }
);
