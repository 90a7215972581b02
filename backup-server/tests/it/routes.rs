//! Every route through `app()`: success, bad input, auth, other tenants and other agents.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN, Auth, backup_policy, server_test, start};

server_test!(tenants_and_token_rotation, |h| async move {
    let t = h.tenant("acme").await;
    assert!(t.token.len() >= 32);
    let none = h.post("/tenants", &Auth::None, json!({"name": "x"})).await;
    assert_eq!((none.status, none.code()), (401, "unauthorized"));
    let wrong = h
        .post(
            "/tenants",
            &Auth::Agent("wrong".into()),
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let unknown = h
        .post(
            "/tenants",
            &Auth::Admin(ADMIN.into()),
            json!({"name": "x", "plan": "gold"}),
        )
        .await;
    assert_eq!((unknown.status, unknown.field()), (422, "plan"));
    let blank = h
        .post("/tenants", &Auth::Admin(ADMIN.into()), json!({"name": " "}))
        .await;
    assert_eq!((blank.status, blank.field()), (422, "name"));

    let rotated = h.post("/token/rotate", &Auth::tenant(&t), json!({})).await;
    assert_eq!(rotated.status, 200);
    let new_token = rotated.body["token"].as_str().expect("token").to_owned();
    let old = h.get("/agents", &Auth::tenant(&t)).await;
    assert_eq!(old.status, 401, "the old token stops working");
    let new = h
        .get(
            "/agents",
            &Auth::Tenant {
                id: t.id.to_string(),
                token: new_token,
            },
        )
        .await;
    assert_eq!(new.status, 200);
});

server_test!(tenant_auth_failures_are_401, |h| async move {
    let t = h.tenant("acme").await;
    let other = h.tenant("other").await;
    let cases = [
        Auth::None,
        Auth::Raw(vec![("authorization", format!("Bearer {}", t.token))]),
        Auth::Raw(vec![("x-tenant-id", t.id.to_string())]),
        Auth::Raw(vec![
            ("authorization", format!("Bearer {}", t.token)),
            ("x-tenant-id", "not-a-uuid".into()),
        ]),
        Auth::Raw(vec![
            ("authorization", "Basic abc".into()),
            ("x-tenant-id", t.id.to_string()),
        ]),
        Auth::Raw(vec![
            ("authorization", "Bearer ".into()),
            ("x-tenant-id", t.id.to_string()),
        ]),
        Auth::Tenant {
            id: other.id.to_string(),
            token: t.token.clone(),
        },
        Auth::Tenant {
            id: t.id.to_string(),
            token: "rft_t_0000".into(),
        },
    ];
    for auth in cases {
        let a = h.get("/agents", &auth).await;
        assert_eq!((a.status, a.code()), (401, "unauthorized"), "{auth:?}");
    }
    let agent_token = h.agent(&t, "db-1").await.token;
    let a = h.get("/agents", &Auth::Agent(agent_token)).await;
    assert_eq!(a.status, 401, "an agent token is not a tenant token");
});

server_test!(agent_management, |h| async move {
    let t = h.tenant("acme").await;
    let auth = Auth::tenant(&t);
    let id = h.agent(&t, "db-1").await.id;
    let view = h.get(&format!("/agents/{id}"), &auth).await;
    assert_eq!(view.status, 200);
    for field in [
        "runningTasks",
        "queueDepth",
        "backoffUntil",
        "pendingRetries",
        "saturated",
        "status",
        "settingsSource",
    ] {
        assert!(view.body.get(field).is_some(), "agent view has {field}");
    }
    assert_eq!(view.body["status"], "offline");
    let list = h.get("/agents?limit=1", &auth).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    for bad in [
        "/agents?limit=0",
        "/agents?limit=501",
        "/agents?limit=x",
        "/agents?cursor=zz",
    ] {
        let a = h.get(bad, &auth).await;
        assert_eq!(a.status, 422, "{bad}: {a:?}");
    }
    let missing = h.post("/agents", &auth, json!({"name": "x"})).await;
    assert_eq!((missing.status, missing.field()), (422, "hostname"));
    let wrong_type = h
        .post("/agents", &auth, json!({"name": 5, "hostname": "h"}))
        .await;
    assert_eq!((wrong_type.status, wrong_type.field()), (422, "name"));

    let settings = h
        .patch(
            &format!("/agents/{id}/settings"),
            &auth,
            json!({"maxConcurrentTasks": 4, "bandwidthLimitMbps": 20}),
        )
        .await;
    assert_eq!(settings.status, 200, "{settings:?}");
    assert_eq!(settings.body["maxConcurrentTasks"], 4);
    assert_eq!(
        settings.body["cpuQuotaPercent"], 50,
        "the full settings come back"
    );
    for (body, field) in [
        (json!({"maxConcurrentTasks": 0}), "maxConcurrentTasks"),
        (json!({"maxConcurrentTasks": 65}), "maxConcurrentTasks"),
        (json!({"maxConcurrentBackups": 5}), "maxConcurrentBackups"),
        (json!({"cpuQuotaPercent": -1}), "cpuQuotaPercent"),
        (json!({"bandwidthLimitMbps": 0}), "bandwidthLimitMbps"),
        (json!({"maxRetries": 101}), "maxRetries"),
        (json!({"backoffBaseSeconds": 3601}), "backoffBaseSeconds"),
        (json!({"maxBackoffMinutes": "10"}), "maxBackoffMinutes"),
        (json!({"maxConcurrency": 3}), "maxConcurrency"),
    ] {
        let a = h
            .patch(&format!("/agents/{id}/settings"), &auth, body.clone())
            .await;
        assert_eq!((a.status, a.field()), (422, field), "{body}: {a:?}");
        let message = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty());
    }
    let a = h.get(&format!("/agents/{id}"), &auth).await;
    assert_eq!(a.body["settingsSource"], "api");
    assert_eq!(a.body["settings"]["bandwidthLimitMbps"], 20);

    let rotated = h
        .post(&format!("/agents/{id}/token"), &auth, json!({}))
        .await;
    assert_eq!(rotated.status, 200);
    let deleted = h
        .call(Method::DELETE, &format!("/agents/{id}"), &auth, None)
        .await;
    assert_eq!(deleted.status, 204);
    let gone = h.get(&format!("/agents/{id}"), &auth).await;
    assert_eq!((gone.status, gone.code()), (404, "not_found"));
    let token = rotated.body["token"].as_str().expect("token").to_owned();
    let revoked = h
        .heartbeat(
            &crate::harness::TestAgent { id, token },
            json!({"runningTasks": 0, "queueDepth": 0}),
        )
        .await;
    assert_eq!(revoked.status, 401, "deleting revokes the token");
});

server_test!(bad_bodies_are_400_413_422_never_500, |h| async move {
    let t = h.tenant("acme").await;
    let auth = Auth::tenant(&t);
    for body in [
        &b"{"[..],
        b"not json",
        b"",
        b"{\"name\": \"a\", \"hostname\": \"b\"} trailing",
        b"\xff\xfe",
    ] {
        let a = h.raw(Method::POST, "/agents", &auth, body.to_vec()).await;
        assert_eq!((a.status, a.code()), (400, "malformed_json"), "{body:?}");
    }
    let array = h.post("/agents", &auth, json!([1, 2])).await;
    assert_eq!(array.status, 422);
    let mut huge = br#"{"name": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1024 * 1024 + 10));
    huge.extend(br#"", "hostname": "h"}"#);
    let a = h.raw(Method::POST, "/agents", &auth, huge).await;
    assert_eq!((a.status, a.code()), (413, "payload_too_large"));
    // Also where the handler reads no body.
    let big = vec![b' '; 2 * 1024 * 1024];
    for (method, path) in [
        (Method::POST, "/token/rotate"),
        (
            Method::DELETE,
            "/agents/00000000-0000-4000-8000-000000000000",
        ),
    ] {
        let a = h.raw(method, path, &auth, big.clone()).await;
        assert_eq!((a.status, a.code()), (413, "payload_too_large"), "{path}");
    }
    let long_name = h
        .post(
            "/agents",
            &auth,
            json!({"name": "x".repeat(300), "hostname": "h"}),
        )
        .await;
    assert_eq!((long_name.status, long_name.field()), (422, "name"));
    let nowhere = h.get("/no/such/route", &auth).await;
    assert_eq!((nowhere.status, nowhere.code()), (404, "not_found"));
    let wrong_method = h.call(Method::PUT, "/agents", &auth, None).await;
    assert_eq!(
        (wrong_method.status, wrong_method.code()),
        (405, "method_not_allowed")
    );
    let bad_id = h.get("/agents/12345", &auth).await;
    assert_eq!(bad_id.status, 404);
    assert!(
        h.get("/healthz", &Auth::None)
            .await
            .headers
            .iter()
            .any(|(k, _)| k == "x-request-id")
    );
});

server_test!(policies_and_run_now, |h| async move {
    let t = h.tenant("acme").await;
    let auth = Auth::tenant(&t);
    let agent = h.agent(&t, "db-1").await.id;
    let p = h.policy(&t, backup_policy(agent)).await;
    let id = p["id"].as_str().expect("id").to_owned();
    assert_eq!(p["nextDueAt"], json!(start()));
    assert_eq!(h.get(&format!("/policies/{id}"), &auth).await.body, p);
    let list = h.get(&format!("/policies?agentId={agent}"), &auth).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        h.get("/policies?agentId=nope", &auth).await.field(),
        "agentId"
    );
    let typo = h.get("/tasks?state=failed", &auth).await;
    assert_eq!(
        (typo.status, typo.field()),
        (422, "state"),
        "a misspelt filter is refused, not ignored: {typo:?}"
    );

    let too_many: Vec<String> = (0..=backup_core::MAX_PATHS)
        .map(|i| format!("/srv/{i}"))
        .collect();
    for (body, field) in [
        (
            json!({"name": "x", "agentId": agent, "kind": "backup", "schedule": {"every": "1h"}, "repository": "main"}),
            "paths",
        ),
        (
            json!({"name": "x", "agentId": agent, "kind": "prune", "schedule": {"every": "1h"}, "repository": "main"}),
            "retention",
        ),
        (
            json!({"name": "x", "agentId": agent, "kind": "backup", "schedule": {"cron": "* *"}, "paths": ["/"], "repository": "main"}),
            "schedule.cron",
        ),
        (
            json!({"name": "x", "agentId": agent, "kind": "backup", "schedule": {"every": "1h"}, "paths": ["/"], "repository": "main", "bogus": 1}),
            "bogus",
        ),
        (
            json!({"name": "x", "agentId": agent, "kind": "archive", "schedule": {"every": "1h"}, "paths": ["/"], "repository": "main"}),
            "kind",
        ),
        (
            json!({"name": "x", "agentId": uuid::Uuid::new_v4(), "kind": "backup", "schedule": {"every": "1h"}, "paths": ["/"], "repository": "main"}),
            "agentId",
        ),
        (
            json!({"name": "x", "agentId": agent, "kind": "backup", "schedule": {"every": "1h"}, "paths": ["/"], "repository": "../etc"}),
            "repository",
        ),
        (
            json!({"name": "x", "agentId": agent, "kind": "backup", "schedule": {"every": "1h"}, "paths": ["/"], "repository": "main", "maxTaskRetries": 101}),
            "maxTaskRetries",
        ),
        (
            json!({"name": "x", "agentId": agent, "kind": "backup", "schedule": {"every": "1h"}, "paths": too_many, "repository": "main"}),
            "paths",
        ),
        (
            json!({"name": "x", "agentId": agent, "kind": "backup", "schedule": {"every": "1h"}, "paths": ["/"], "excludes": too_many, "repository": "main"}),
            "excludes",
        ),
    ] {
        let a = h.post("/policies", &auth, body.clone()).await;
        assert_eq!((a.status, a.field()), (422, field), "{body}: {a:?}");
    }
    let too_many: Vec<String> = (0..300).map(|i| format!("/p{i}")).collect();
    let mut body = backup_policy(agent);
    body["paths"] = json!(too_many);
    assert_eq!(h.post("/policies", &auth, body).await.field(), "paths");

    let patched = h
        .patch(&format!("/policies/{id}"), &auth, json!({"enabled": false}))
        .await;
    assert_eq!(
        (
            patched.status,
            patched.body["enabled"].clone(),
            patched.body["nextDueAt"].clone()
        ),
        (200, json!(false), Value::Null)
    );
    let bad_patch = h
        .patch(&format!("/policies/{id}"), &auth, json!({"paths": []}))
        .await;
    assert_eq!((bad_patch.status, bad_patch.field()), (422, "paths"));

    let run = h
        .post(&format!("/policies/{id}/run"), &auth, json!({}))
        .await;
    assert_eq!(run.status, 201, "run now works while disabled: {run:?}");
    for field in [
        "attempt",
        "retryCount",
        "maxRetries",
        "nextRetryAt",
        "failedPermanently",
        "permanentReason",
        "lastError",
        "slot",
        "leaseExpiresAt",
    ] {
        assert!(run.body.get(field).is_some(), "task view has {field}");
    }
    let again = h
        .post(&format!("/policies/{id}/run"), &auth, json!({}))
        .await;
    assert_eq!((again.status, again.code()), (409, "conflict"));
    let deleted = h
        .call(Method::DELETE, &format!("/policies/{id}"), &auth, None)
        .await;
    assert_eq!(deleted.status, 204);
    let task = h
        .get(
            &format!("/tasks/{}", run.body["id"].as_str().expect("task id")),
            &auth,
        )
        .await;
    assert_eq!(
        task.body["status"], "cancelled",
        "deleting the policy cancels its pending task"
    );
});

server_test!(the_agent_protocol_end_to_end, |h| async move {
    let t = h.tenant("acme").await;
    let auth = Auth::tenant(&t);
    let agent = h.agent(&t, "db-1").await;
    let answer = h.heartbeat(&agent, json!({"runningTasks": 0, "queueDepth": 0, "proposedSettings": {"maxConcurrentTasks": 2}, "futureField": true})).await;
    assert_eq!(
        answer.status, 200,
        "unknown fields are fine on agent routes: {answer:?}"
    );
    assert_eq!(
        answer.body["settings"]["maxConcurrentTasks"], 2,
        "proposal adopted"
    );
    assert_eq!(answer.body["serverTime"], json!(start()));
    let p = h.policy(&t, backup_policy(agent.id)).await;
    h.tick().await;
    let tasks = h.claim(&agent, 5).await;
    assert_eq!(tasks.len(), 1);
    let task = tasks[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(tasks[0]["policyId"], p["id"]);
    assert_eq!(tasks[0]["attempt"], 1);
    let me = Auth::Agent(agent.token.clone());
    let started = h
        .post(&format!("/tasks/{task}/start"), &me, json!({"attempt": 1}))
        .await;
    assert_eq!(
        (started.status, started.body["status"].clone()),
        (200, json!("running"))
    );
    let wrong_attempt = h
        .post(&format!("/tasks/{task}/start"), &me, json!({"attempt": 3}))
        .await;
    assert_eq!(
        (wrong_attempt.status, wrong_attempt.code()),
        (409, "conflict")
    );
    let report = json!({"attempt": 1, "outcome": "failed", "errorKind": "retriable", "error": "locked", "exitCode": 1});
    let failed = h
        .post(&format!("/tasks/{task}/result"), &me, report.clone())
        .await;
    assert_eq!(failed.status, 200, "{failed:?}");
    assert_eq!(
        (
            failed.body["status"].clone(),
            failed.body["retryCount"].clone()
        ),
        (json!("pending"), json!(1))
    );
    assert!(failed.body["nextRetryAt"].is_string());
    let replay = h.post(&format!("/tasks/{task}/result"), &me, report).await;
    assert_eq!(replay.body, failed.body, "a repeat answers the same");
    let never = h
        .post(
            &format!("/tasks/{task}/result"),
            &me,
            json!({"attempt": 7, "outcome": "succeeded"}),
        )
        .await;
    assert_eq!((never.status, never.code()), (409, "conflict"));
    let bad_outcome = h
        .post(
            &format!("/tasks/{task}/result"),
            &me,
            json!({"attempt": 1, "outcome": "meh"}),
        )
        .await;
    assert_eq!((bad_outcome.status, bad_outcome.field()), (422, "outcome"));
    for limit in [0, 501] {
        let a = h
            .post(
                &format!("/agents/{}/tasks/claim", agent.id),
                &me,
                json!({"limit": limit}),
            )
            .await;
        assert_eq!((a.status, a.field()), (422, "limit"));
    }
    let runs = h.get(&format!("/backup-runs?taskId={task}"), &auth).await;
    let run = &runs.body["items"][0];
    assert_eq!(
        (
            run["status"].clone(),
            run["late"].clone(),
            run["failedPermanently"].clone()
        ),
        (json!("failed"), json!(false), json!(false))
    );
    assert_eq!(
        h.get("/backup-runs?status=bogus", &auth).await.field(),
        "status"
    );
    let filtered = h
        .get(
            &format!(
                "/tasks?status=pending&policyId={}",
                p["id"].as_str().expect("id")
            ),
            &auth,
        )
        .await;
    assert_eq!(filtered.body["items"].as_array().map(Vec::len), Some(1));
    let cancelled = h
        .post(&format!("/tasks/{task}/cancel"), &auth, json!({}))
        .await;
    assert_eq!(cancelled.body["status"], "cancelled");
    let done = h
        .post(&format!("/tasks/{task}/cancel"), &auth, json!({}))
        .await;
    assert_eq!(done.status, 200, "cancelling twice is harmless");
});

server_test!(other_tenants_and_other_agents_get_404, |h| async move {
    let owner = h.tenant("owner").await;
    let other = h.tenant("other").await;
    let stranger = Auth::tenant(&other);
    let agent = h.agent(&owner, "db-1").await;
    let other_agent = h.agent(&other, "x").await;
    h.online(&agent).await;
    let p = h.policy(&owner, backup_policy(agent.id)).await;
    let pid = p["id"].as_str().expect("id").to_owned();
    let run = h
        .post(
            &format!("/policies/{pid}/run"),
            &Auth::tenant(&owner),
            json!({}),
        )
        .await;
    let task = run.body["id"].as_str().expect("task").to_owned();
    let aid = &agent.id;
    for (method, path, body) in [
        (Method::GET, format!("/agents/{aid}"), None),
        (Method::DELETE, format!("/agents/{aid}"), None),
        (
            Method::PATCH,
            format!("/agents/{aid}/settings"),
            Some(json!({})),
        ),
        (Method::POST, format!("/agents/{aid}/token"), None),
        (Method::GET, format!("/policies/{pid}"), None),
        (Method::PATCH, format!("/policies/{pid}"), Some(json!({}))),
        (Method::DELETE, format!("/policies/{pid}"), None),
        (Method::POST, format!("/policies/{pid}/run"), None),
        (Method::GET, format!("/tasks/{task}"), None),
        (Method::POST, format!("/tasks/{task}/cancel"), None),
    ] {
        let a = h.call(method.clone(), &path, &stranger, body).await;
        assert_eq!((a.status, a.code()), (404, "not_found"), "{method} {path}");
    }
    for path in [
        format!("/tasks?agentId={aid}"),
        format!("/backup-runs?policyId={pid}"),
        format!("/policies?agentId={aid}"),
        "/agents".into(),
    ] {
        let a = h.get(&path, &stranger).await;
        let items = a.body["items"].as_array().cloned().unwrap_or_default();
        assert!(
            items
                .iter()
                .all(|i| i["id"] != json!(aid) && i["agentId"] != json!(aid)),
            "{path}: {items:?}"
        );
    }
    // Another agent cannot heartbeat, claim, start or report as this one.
    let impostor = Auth::Agent(other_agent.token.clone());
    for (path, body) in [
        (
            format!("/agents/{aid}/heartbeat"),
            json!({"runningTasks": 0, "queueDepth": 0}),
        ),
        (format!("/agents/{aid}/tasks/claim"), json!({"limit": 1})),
        (format!("/tasks/{task}/start"), json!({"attempt": 1})),
        (
            format!("/tasks/{task}/result"),
            json!({"attempt": 1, "outcome": "succeeded"}),
        ),
    ] {
        let a = h.post(&path, &impostor, body).await;
        assert_eq!(a.status, 404, "{path} as another agent");
    }
    let tenant_token_as_agent = h
        .post(
            &format!("/agents/{aid}/heartbeat"),
            &Auth::Agent(owner.token.clone()),
            json!({"runningTasks": 0, "queueDepth": 0}),
        )
        .await;
    assert_eq!(tenant_token_as_agent.status, 401);
});

server_test!(
    agent_floods_are_rate_limited_per_token,
    backup_server::ServerConfig {
        limits: backup_server::LimitsConfig {
            agent_requests_per_second: 5,
            ..backup_server::LimitsConfig::default()
        },
        ..backup_server::ServerConfig::default()
    },
    |h| async move {
        let t = h.tenant("acme").await;
        let noisy = h.agent(&t, "noisy").await;
        let quiet = h.agent(&t, "quiet").await;
        let mut limited = None;
        for _ in 0..30 {
            let a = h
                .heartbeat(&noisy, json!({"runningTasks": 0, "queueDepth": 0}))
                .await;
            if a.status == 429 {
                limited = Some(a);
                break;
            }
        }
        let limited = limited.expect("a flood is limited");
        assert_eq!(limited.code(), "rate_limited");
        assert!(limited.header("retry-after").is_some());
        let a = h
            .heartbeat(&quiet, json!({"runningTasks": 0, "queueDepth": 0}))
            .await;
        assert_eq!(a.status, 200, "other agents are not starved");
    }
);

server_test!(operational_endpoints, |h| async move {
    assert_eq!(h.get("/healthz", &Auth::None).await.status, 200);
    assert_eq!(h.get("/readyz", &Auth::None).await.status, 200);
    let t = h.tenant("acme").await;
    h.get("/agents", &Auth::tenant(&t)).await;
    let text = h.metrics_text().await;
    assert!(
        text.contains(
            "backup_server_http_requests_total{method=\"GET\",route=\"/agents\",status=\"200\"} 1"
        ),
        "{text}"
    );
    h.state.store().close().await;
    let down = h.get("/readyz", &Auth::None).await;
    assert_eq!((down.status, down.code()), (503, "database_unavailable"));
    assert_eq!(down.header("retry-after"), Some("5"));
    let api = h.get("/agents", &Auth::tenant(&t)).await;
    assert_eq!(
        api.status, 503,
        "database down is 503 with Retry-After, not 500"
    );
});

server_test!(nul_characters_are_422_or_kept_never_500, |h| async move {
    let t = h.tenant("acme").await;
    let auth = Auth::tenant(&t);
    // Names: a 422 naming the field (PostgreSQL cannot store a NUL; SQLite must agree).
    for (path, body, field) in [
        (
            "/agents",
            json!({"name": "a\u{0}b", "hostname": "h"}),
            "name",
        ),
        (
            "/agents",
            json!({"name": "a", "hostname": "h\u{0}"}),
            "hostname",
        ),
        (
            "/agents",
            json!({"name": "line\nbreak", "hostname": "h"}),
            "name",
        ),
    ] {
        let a = h.post(path, &auth, body).await;
        assert_eq!((a.status, a.field()), (422, field), "{a:?}");
    }
    let agent = h.agent(&t, "db-1").await;
    let mut policy = backup_policy(agent.id);
    policy["name"] = json!("nightly\u{0}");
    let a = h.post("/policies", &auth, policy).await;
    assert_eq!((a.status, a.field()), (422, "name"));
    // Agent text (restic's stderr, versions) is kept with the NUL replaced: a 422 would strand
    // the result in the agent's outbox.
    let hb = h
        .heartbeat(
            &agent,
            json!({"runningTasks": 0, "queueDepth": 0, "agentVersion": "0.1\u{0}", "resticVersion": "0.14.0"}),
        )
        .await;
    assert_eq!(hb.status, 200, "{hb:?}");
    let p = h.policy(&t, backup_policy(agent.id)).await;
    h.tick().await;
    let task = h.claim_one(&agent).await;
    let me = Auth::Agent(agent.token.clone());
    let report = json!({"attempt": 1, "outcome": "failed", "errorKind": "retriable", "error": "Fatal: \u{0} in stderr", "exitCode": 1});
    let a = h.post(&format!("/tasks/{task}/result"), &me, report).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["lastError"], "Fatal: \u{FFFD} in stderr");
    let view = h.get(&format!("/agents/{}", agent.id), &auth).await;
    assert_eq!(view.body["agentVersion"], "0.1\u{FFFD}");
    assert_eq!(p["agentId"], json!(agent.id));
});

server_test!(null_on_a_field_that_cannot_be_null_is_422, |h| async move {
    let t = h.tenant("acme").await;
    let auth = Auth::tenant(&t);
    let agent = h.agent(&t, "db-1").await;
    let settings = format!("/agents/{}/settings", agent.id);
    let a = h.patch(&settings, &auth, json!({"maxRetries": null})).await;
    assert_eq!((a.status, a.field()), (422, "maxRetries"), "{a:?}");
    let view = h.get(&format!("/agents/{}", agent.id), &auth).await;
    assert_eq!(
        view.body["settingsSource"], "agent",
        "a refused PATCH does not take the settings from the agent"
    );
    let unlimited = h
        .patch(&settings, &auth, json!({"bandwidthLimitMbps": null}))
        .await;
    assert_eq!(unlimited.status, 200, "null means unlimited for bandwidth");
    let p = h.policy(&t, backup_policy(agent.id)).await;
    let path = format!("/policies/{}", p["id"].as_str().expect("id"));
    for field in ["name", "enabled", "schedule", "paths"] {
        let a = h.patch(&path, &auth, json!({ field: null })).await;
        assert_eq!((a.status, a.field()), (422, field), "{a:?}");
    }
    let cleared = h.patch(&path, &auth, json!({"timeoutMinutes": null})).await;
    assert_eq!(cleared.status, 200, "null clears a nullable field");
    let mut cron = backup_policy(agent.id);
    cron["schedule"] = json!({"cron": "0 3 * * *"});
    let cron = h.policy(&t, cron).await;
    assert_eq!(
        cron["schedule"],
        json!({"cron": "0 3 * * *", "timezone": "UTC"}),
        "the view names the default zone"
    );
});

server_test!(
    agent_reports_are_bounded_and_cursors_checked,
    |h| async move {
        let t = h.tenant("acme").await;
        let auth = Auth::tenant(&t);
        let agent = h.agent(&t, "db-1").await;
        let hb = h
            .heartbeat(
                &agent,
                json!({"runningTasks": 0, "queueDepth": 0, "agentVersion": "v".repeat(5000),
                   "backoffUntil": "+200000-01-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(hb.status, 200, "{hb:?}");
        let view = h.get(&format!("/agents/{}", agent.id), &auth).await;
        assert_eq!(
            view.body["agentVersion"].as_str().map(str::len),
            Some(200),
            "an agent cannot store 5,000 characters of version"
        );
        h.policy(&t, backup_policy(agent.id)).await;
        h.tick().await;
        let task = h.claim_one(&agent).await;
        let me = Auth::Agent(agent.token.clone());
        let report = json!({"attempt": 1, "outcome": "succeeded", "snapshotId": "s".repeat(1000),
                        "startedAt": "0001-01-01T00:00:00Z", "finishedAt": "+100000-01-01T00:00:00Z"});
        let a = h.post(&format!("/tasks/{task}/result"), &me, report).await;
        assert_eq!(a.status, 200, "{a:?}");
        let runs = h.get(&format!("/backup-runs?taskId={task}"), &auth).await;
        assert_eq!(
            runs.body["items"][0]["snapshotId"].as_str().map(str::len),
            Some(128)
        );
        // A cursor naming a time no row can have (PostgreSQL cannot even hold it) is a 422.
        let forged = hex::encode(format!(
            "-1000000000000000.{}",
            uuid::Uuid::new_v4().simple()
        ));
        let a = h.get(&format!("/agents?cursor={forged}"), &auth).await;
        assert_eq!((a.status, a.field()), (422, "cursor"), "{a:?}");
        // Made-up methods share one metrics label.
        let odd = Method::from_bytes(b"MADEUPMETHOD").expect("a token");
        h.call(odd, "/agents", &auth, None).await;
        let text = h.metrics_text().await;
        assert!(!text.contains("MADEUPMETHOD"), "{text}");
        assert!(text.contains("method=\"other\""), "{text}");
    }
);

server_test!(mistakes_are_caught_where_they_are_made, |h| async move {
    let t = h.tenant("acme").await;
    let auth = Auth::tenant(&t);
    let agent = h.agent(&t, "db-1").await;
    // A relative path would be read from the agent's own working directory.
    let mut relative = backup_policy(agent.id);
    relative["paths"] = json!(["/srv", "data/photos"]);
    let a = h.post("/policies", &auth, relative).await;
    assert_eq!(
        (a.status, a.code(), a.field()),
        (422, "validation_failed", "paths"),
        "{a:?}"
    );
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"data/photos\"") && m.contains("absolute")),
        "{a:?}"
    );
    // A cron error names the field at fault.
    let mut cron = backup_policy(agent.id);
    cron["schedule"] = json!({"cron": "0 25 * * *"});
    let a = h.post("/policies", &auth, cron).await;
    let message = a.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!((a.status, a.field()), (422, "schedule.cron"), "{a:?}");
    assert!(
        message.contains("hour") && message.contains("0-23") && !message.contains("5 fields"),
        "{message}"
    );
    // Run-now's 409 names the open task.
    let p = h.policy(&t, backup_policy(agent.id)).await;
    let id = p["id"].as_str().expect("id");
    let first = h
        .post(&format!("/policies/{id}/run"), &auth, json!({}))
        .await;
    assert_eq!(first.status, 201);
    let task = first.body["id"].as_str().expect("task").to_owned();
    let again = h
        .post(&format!("/policies/{id}/run"), &auth, json!({}))
        .await;
    assert_eq!((again.status, again.code()), (409, "conflict"));
    assert!(
        again.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&task) && m.contains("cancel")),
        "{again:?}"
    );
});

server_test!(
    a_patch_can_hand_the_settings_back_to_the_agent,
    |h| async move {
        let t = h.tenant("acme").await;
        let auth = Auth::tenant(&t);
        let agent = h.agent(&t, "db-1").await;
        let path = format!("/agents/{}/settings", agent.id);
        let a = h
            .patch(&path, &auth, json!({"maxConcurrentTasks": 2}))
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        let proposal = json!({"runningTasks": 0, "queueDepth": 0, "proposedSettings": {"maxConcurrentTasks": 4}});
        let hb = h.heartbeat(&agent, proposal.clone()).await;
        assert_eq!(
            (
                hb.body["settings"]["maxConcurrentTasks"].clone(),
                hb.body["settingsSource"].clone()
            ),
            (json!(2), json!("api")),
            "a PATCHed agent's proposals are ignored, and the answer says why"
        );
        let back = h.patch(&path, &auth, json!({"source": "agent"})).await;
        assert_eq!(back.status, 200, "{back:?}");
        let view = h.get(&format!("/agents/{}", agent.id), &auth).await;
        assert_eq!(view.body["settingsSource"], "agent");
        let hb = h.heartbeat(&agent, proposal).await;
        assert_eq!(
            (
                hb.body["settings"]["maxConcurrentTasks"].clone(),
                hb.body["settingsSource"].clone()
            ),
            (json!(4), json!("agent")),
            "the file rules again"
        );
        let bad = h.patch(&path, &auth, json!({"source": "someone"})).await;
        assert_eq!((bad.status, bad.field()), (422, "source"), "{bad:?}");
    }
);

server_test!(error_messages_speak_the_apis_words, |h| async move {
    let t = h.tenant("acme").await;
    let auth = Auth::tenant(&t);
    let agent = h.agent(&t, "db-1").await;
    let settings = format!("/agents/{}/settings", agent.id);
    let mut policy = backup_policy(agent.id);
    policy["kind"] = json!("snapshot");
    let cases = [
        h.patch(&settings, &auth, json!({"maxConcurrentTasks": "four"}))
            .await,
        h.patch(&settings, &auth, json!({"cpuQuotaPercent": 12.5}))
            .await,
        h.patch(&settings, &auth, json!({"maxRetries": [1]})).await,
        h.post("/policies", &auth, policy).await,
        h.get("/tasks?limit=lots", &auth).await,
    ];
    for a in &cases {
        let message = a.body["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(a.status, 422, "{a:?}");
        for rust in ["i64", "u32", "Option", "Some(", "struct", "at line", "`"] {
            assert!(!message.contains(rust), "{rust:?} in {message:?}");
        }
    }
    let text = |i: usize| {
        cases[i].body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        text(0).contains("\"four\" (text)") && text(0).contains("a whole number"),
        "{}",
        text(0)
    );
    assert!(text(2).contains("a list"), "{}", text(2));
    assert!(
        text(3).contains("\"snapshot\" is not one of backup, check, prune"),
        "{}",
        text(3)
    );
});
