//! The tenant isolation matrix: every route, called by the owning tenant, another tenant, an
//! agent of the owner, an agent of another tenant, no token and a malformed token. Each cell
//! has its documented status, and nothing of one tenant shows to another.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Auth, Harness, Kind, backup_policy};

#[derive(Clone, Copy, Debug)]
enum Caller {
    Owner,
    OtherTenant,
    OwnAgent,
    OtherAgent,
    Nobody,
    Malformed,
}

const CALLERS: [Caller; 6] = [
    Caller::Owner,
    Caller::OtherTenant,
    Caller::OwnAgent,
    Caller::OtherAgent,
    Caller::Nobody,
    Caller::Malformed,
];

/// What a route is, for the expected statuses.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind2 {
    /// Needs the admin token.
    Admin,
    /// A tenant route on one of the owner's objects: other tenants get 404.
    TenantObject,
    /// A tenant route on the caller's own scope (lists, creates, token rotation).
    TenantScope,
    /// A tenant route whose body names one of the owner's agents (a restore, a listing):
    /// other tenants get 422 on `agentId`.
    TenantBody,
    /// An agent route on the owning agent or its task: other agents get 404.
    AgentRoute,
    /// Open to all.
    Public,
}

fn expected(kind: Kind2, caller: Caller, success: u16) -> u16 {
    use Caller::*;
    match (kind, caller) {
        (Kind2::Public, _) => 200,
        (Kind2::Admin, _) => 401,
        (Kind2::TenantObject, Owner) => success,
        (Kind2::TenantObject, OtherTenant) => 404,
        (Kind2::TenantScope, Owner | OtherTenant) => success,
        (Kind2::TenantBody, Owner) => success,
        (Kind2::TenantBody, OtherTenant) => 422,
        (Kind2::TenantObject | Kind2::TenantScope | Kind2::TenantBody, _) => 401,
        (Kind2::AgentRoute, OwnAgent) => success,
        (Kind2::AgentRoute, OtherAgent) => 404,
        (Kind2::AgentRoute, _) => 401,
    }
}

struct World {
    h: Harness,
    owner: Auth,
    other: Auth,
    own_agent: Auth,
    other_agent: Auth,
    agent: backup_core::AgentId,
    policy: String,
    task: String,
    owner_tenant: backup_core::TenantCreated,
}

async fn world(kind: Kind) -> Option<World> {
    let h = Harness::open(kind, backup_server::ServerConfig::default()).await?;
    let t1 = h.tenant("owner").await;
    let t2 = h.tenant("other").await;
    let a1 = h.agent(&t1, "owned").await;
    let a2 = h.agent(&t2, "foreign").await;
    h.online(&a1).await;
    let p = h.policy(&t1, backup_policy(a1.id)).await;
    let policy = p["id"].as_str().expect("id").to_owned();
    h.policy(&t2, backup_policy(a2.id)).await;
    let run = h
        .post(
            &format!("/policies/{policy}/run"),
            &Auth::tenant(&t1),
            json!({}),
        )
        .await;
    let task = run.body["id"].as_str().expect("task").to_owned();
    Some(World {
        owner: Auth::tenant(&t1),
        other: Auth::tenant(&t2),
        own_agent: Auth::Agent(a1.token.clone()),
        other_agent: Auth::Agent(a2.token.clone()),
        agent: a1.id,
        policy,
        task,
        owner_tenant: t1,
        h,
    })
}

impl World {
    fn auth(&self, caller: Caller) -> Auth {
        match caller {
            Caller::Owner => self.owner.clone(),
            Caller::OtherTenant => self.other.clone(),
            Caller::OwnAgent => self.own_agent.clone(),
            Caller::OtherAgent => self.other_agent.clone(),
            Caller::Nobody => Auth::None,
            Caller::Malformed => Auth::Raw(vec![
                ("authorization", "Token ???".into()),
                ("x-tenant-id", "not-a-uuid".into()),
            ]),
        }
    }
}

/// Runs a test on SQLite and on PostgreSQL.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Kind::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Kind::Postgres).await
            }
        }
    };
}

on_both!(every_route_for_every_caller);
on_both!(lists_and_filters_never_show_another_tenants_objects);

/// One row of the matrix: method, path, body, what the route is, its status on success.
type Row = (Method, String, Option<Value>, Kind2, u16);

/// Calls every row as every caller and checks each cell's status (and the error body of each
/// 401 and 404).
async fn check_rows(w: &World, rows: &[Row]) {
    for (method, path, body, kind, success) in rows {
        for caller in CALLERS {
            let answer =
                w.h.call(method.clone(), path, &w.auth(caller), body.clone())
                    .await;
            let want = expected(*kind, caller, *success);
            assert_eq!(
                answer.status, want,
                "{method} {path} as {caller:?}: {}",
                answer.body
            );
            if answer.status == 401 || answer.status == 404 {
                assert!(
                    answer.body["error"]["code"].is_string(),
                    "the documented error body"
                );
            }
        }
    }
}

async fn every_route_for_every_caller(kind: Kind) {
    let Some(w) = world(kind).await else { return };
    let (a, p, t) = (w.agent, w.policy.clone(), w.task.clone());
    let hook =
        w.h.post(
            "/webhooks",
            &w.owner,
            json!({"url": "https://1.1.1.1/hook", "events": ["*"]}),
        )
        .await;
    assert_eq!(hook.status, 201, "{:?}", hook.body);
    let wh = hook.body["id"].as_str().expect("id").to_owned();
    let enrollment =
        w.h.post(
            "/enrollment-tokens",
            &w.owner,
            json!({"expiresIn": "1h", "maxUses": 1}),
        )
        .await;
    assert_eq!(enrollment.status, 201, "{:?}", enrollment.body);
    let et = enrollment.body["id"].as_str().expect("id").to_owned();
    // (method, path, body, kind, status on success). Mutating routes come last, each on
    // objects no other row needs afterwards.
    let routes: Vec<Row> = vec![
        (Method::GET, "/events".into(), None, Kind2::TenantScope, 200),
        (
            Method::GET,
            "/summary".into(),
            None,
            Kind2::TenantScope,
            200,
        ),
        (
            Method::GET,
            "/webhooks".into(),
            None,
            Kind2::TenantScope,
            200,
        ),
        (
            Method::GET,
            "/enrollment-tokens".into(),
            None,
            Kind2::TenantScope,
            200,
        ),
        (
            Method::POST,
            "/enrollment-tokens".into(),
            Some(json!({"expiresIn": "1h", "maxUses": 3})),
            Kind2::TenantScope,
            201,
        ),
        (
            Method::POST,
            "/webhooks".into(),
            Some(json!({"url": "https://8.8.8.8/x", "events": ["agent.offline"]})),
            Kind2::TenantScope,
            201,
        ),
        (
            Method::GET,
            format!("/webhooks/{wh}/deliveries"),
            None,
            Kind2::TenantObject,
            200,
        ),
        (Method::GET, "/healthz".into(), None, Kind2::Public, 200),
        (Method::GET, "/readyz".into(), None, Kind2::Public, 200),
        (Method::GET, "/metrics".into(), None, Kind2::Public, 200),
        (
            Method::GET,
            "/openapi.json".into(),
            None,
            Kind2::Public,
            200,
        ),
        (
            Method::POST,
            "/tenants".into(),
            Some(json!({"name": "x"})),
            Kind2::Admin,
            201,
        ),
        (Method::GET, "/agents".into(), None, Kind2::TenantScope, 200),
        (
            Method::GET,
            format!("/agents/{a}"),
            None,
            Kind2::TenantObject,
            200,
        ),
        (Method::GET, "/tasks".into(), None, Kind2::TenantScope, 200),
        (
            Method::GET,
            format!("/tasks/{t}"),
            None,
            Kind2::TenantObject,
            200,
        ),
        (
            Method::GET,
            "/policies".into(),
            None,
            Kind2::TenantScope,
            200,
        ),
        (
            Method::GET,
            format!("/policies/{p}"),
            None,
            Kind2::TenantObject,
            200,
        ),
        (
            Method::GET,
            "/backup-runs".into(),
            None,
            Kind2::TenantScope,
            200,
        ),
        (
            Method::GET,
            "/snapshots".into(),
            None,
            Kind2::TenantScope,
            200,
        ),
        (
            Method::PUT,
            format!("/agents/{a}/repositories/main/snapshots"),
            Some(json!({"snapshots": [{"id": "ab".repeat(32), "time": "2026-03-01T00:00:00Z"}]})),
            Kind2::AgentRoute,
            200,
        ),
        (
            Method::PATCH,
            format!("/agents/{a}/settings"),
            Some(json!({"cpuQuotaPercent": 60})),
            Kind2::TenantObject,
            200,
        ),
        (
            Method::PATCH,
            format!("/policies/{p}"),
            Some(json!({"name": "renamed"})),
            Kind2::TenantObject,
            200,
        ),
        (
            Method::POST,
            format!("/agents/{a}/heartbeat"),
            Some(json!({"runningTasks": 0, "queueDepth": 0})),
            Kind2::AgentRoute,
            200,
        ),
        (
            Method::POST,
            format!("/agents/{a}/tasks/claim"),
            Some(json!({"limit": 1})),
            Kind2::AgentRoute,
            200,
        ),
    ];
    check_rows(&w, &routes).await;
    // The claim above (as the owning agent) took the task: start and result as each caller.
    for (step, body) in [
        ("start", json!({"attempt": 1})),
        ("result", json!({"attempt": 1, "outcome": "succeeded"})),
    ] {
        let path = format!("/tasks/{t}/{step}");
        for caller in CALLERS {
            let answer =
                w.h.call(Method::POST, &path, &w.auth(caller), Some(body.clone()))
                    .await;
            assert_eq!(
                answer.status,
                expected(Kind2::AgentRoute, caller, 200),
                "{step} as {caller:?}"
            );
        }
    }
    // Restores and listings of the snapshot reported above (after the claim, which must take
    // the world's task and not one of these).
    let asked: Vec<Row> = vec![
        (
            Method::POST,
            "/restores".into(),
            Some(
                json!({"agentId": a, "repository": "main", "snapshotId": "ab".repeat(4), "target": "/var/restores/x"}),
            ),
            Kind2::TenantBody,
            201,
        ),
        (
            Method::POST,
            format!("/snapshots/{}/ls", "ab".repeat(32)),
            Some(json!({"agentId": a, "repository": "main", "path": "/srv"})),
            Kind2::TenantBody,
            201,
        ),
    ];
    check_rows(&w, &asked).await;
    check_rows(
        &w,
        &[
            (
                Method::DELETE,
                format!("/webhooks/{wh}"),
                None,
                Kind2::TenantObject,
                204,
            ),
            (
                Method::DELETE,
                format!("/enrollment-tokens/{et}"),
                None,
                Kind2::TenantObject,
                204,
            ),
        ],
    )
    .await;
    // Destructive tenant routes, each on a fresh object per caller.
    for caller in CALLERS {
        let fresh = w.h.agent(&w.owner_tenant, "victim").await;
        let fp = w.h.policy(&w.owner_tenant, backup_policy(fresh.id)).await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let cases: Vec<(Method, String, u16)> = vec![
            (Method::POST, format!("/policies/{fp}/run"), 201),
            (Method::POST, format!("/agents/{}/token", fresh.id), 200),
            (Method::DELETE, format!("/policies/{fp}"), 204),
            (Method::DELETE, format!("/agents/{}", fresh.id), 204),
        ];
        let mut created_task = None;
        for (method, path, success) in cases {
            let answer = w.h.call(method.clone(), &path, &w.auth(caller), None).await;
            assert_eq!(
                answer.status,
                expected(Kind2::TenantObject, caller, success),
                "{method} {path} as {caller:?}"
            );
            if success == 201 && answer.status == 201 {
                created_task = answer.body["id"].as_str().map(str::to_owned);
            }
        }
        match created_task {
            Some(task) => {
                // The owner's run-now task, cancelled already by the policy's deletion.
                let answer = w.h.cancel(&task, &w.auth(caller)).await;
                assert_eq!(answer.status, 200, "cancel as the owner");
                assert_eq!(answer.body["status"], "cancelled");
            }
            None => {
                // Cancel someone else's task: a fresh pending task of the owner's.
                let victim_policy = w.h.policy(&w.owner_tenant, backup_policy(w.agent)).await["id"]
                    .as_str()
                    .expect("id")
                    .to_owned();
                let victim =
                    w.h.post(
                        &format!("/policies/{victim_policy}/run"),
                        &w.owner,
                        json!({}),
                    )
                    .await;
                assert_eq!(victim.status, 201, "{victim:?}");
                let task = victim.body["id"].as_str().expect("task id");
                let answer = w.h.cancel(task, &w.auth(caller)).await;
                assert_eq!(
                    answer.status,
                    expected(Kind2::TenantObject, caller, 200),
                    "cancel as {caller:?}"
                );
                let seen = w.h.get(&format!("/tasks/{task}"), &w.owner).await;
                assert_eq!(
                    seen.body["status"], "pending",
                    "{caller:?} could not cancel it"
                );
            }
        }
    }
    // Token rotation: its own scope; last, since it changes the callers' tokens.
    for caller in CALLERS {
        let answer =
            w.h.call(Method::POST, "/token/rotate", &w.auth(caller), None)
                .await;
        let want = match caller {
            Caller::Owner | Caller::OtherTenant => 200,
            _ => 401,
        };
        assert_eq!(answer.status, want, "rotate as {caller:?}");
        if want == 200 {
            break; // The rotated token no longer works for the next rows.
        }
    }
}

async fn lists_and_filters_never_show_another_tenants_objects(kind: Kind) {
    let Some(w) = world(kind).await else { return };
    let snapshot = "cd".repeat(32);
    let reported = w
        .h
        .call(
            Method::PUT,
            &format!("/agents/{}/repositories/main/snapshots", w.agent),
            &w.own_agent,
            Some(json!({"snapshots": [{"id": snapshot, "time": "2026-03-01T00:00:00Z", "tags": [format!("policy:{}", w.policy)]}]})),
        )
        .await;
    assert_eq!(reported.status, 200, "{}", reported.body);
    let owner_ids = [
        w.agent.to_string(),
        w.policy.clone(),
        w.task.clone(),
        snapshot,
    ];
    let seen = w.h.get("/snapshots", &w.owner).await;
    assert_eq!(
        seen.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        seen.body
    );
    for path in [
        "/snapshots".to_owned(),
        format!("/snapshots?agentId={}", w.agent),
        format!("/snapshots?policyId={}", w.policy),
        "/agents".to_owned(),
        "/tasks".to_owned(),
        "/policies".to_owned(),
        "/backup-runs".to_owned(),
        format!("/tasks?agentId={}", w.agent),
        format!("/tasks?policyId={}", w.policy),
        format!("/policies?agentId={}", w.agent),
        format!("/backup-runs?taskId={}", w.task),
        format!("/backup-runs?agentId={}", w.agent),
    ] {
        let answer = w.h.get(&path, &w.other).await;
        assert_eq!(answer.status, 200, "{path}");
        let text = answer.body.to_string();
        for id in &owner_ids {
            assert!(
                !text.contains(id.as_str()),
                "{path} shows the owner's {id} to another tenant: {text}"
            );
        }
    }
}
