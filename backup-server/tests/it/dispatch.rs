//! Prompt dispatch: a claim with `waitSeconds` is answered with the task run-now makes while it
//! waits (on this replica, and through PostgreSQL from another), empty when the wait ends, at
//! once past `limits.maxWaitingClaims`. No test here measures time: each proves the wake-up by
//! what the answer holds (a claim that was not woken answers empty at the end of its wait).

use std::sync::Arc;

use axum::http::Method;
use backup_core::SystemClock;
use backup_server::{LimitsConfig, Server, ServerConfig};
use backup_testkit::{Client, Http};
use serde_json::{Value, json};

use crate::harness::{ADMIN, Auth, Harness, TestAgent, backup_policy, server_test};

async fn claim(h: &Harness, agent: &TestAgent, wait: u32) -> Value {
    let answer = h
        .call(
            Method::POST,
            &format!("/agents/{}/tasks/claim", agent.id),
            &agent.auth(),
            Some(json!({"limit": 1, "waitSeconds": wait})),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

server_test!(a_waiting_claim_gets_the_run_now_task, |h| async move {
    let t = h.tenant("acme").await;
    let agent = h.agent(&t, "db-1").await;
    h.online(&agent).await;
    let p = h.policy(&t, backup_policy(agent.id)).await;
    let policy = p["id"].as_str().expect("id").to_owned();
    // The policy's first task is due at the first tick; no tick runs here, so nothing waits.
    let (answer, run) = tokio::join!(claim(&h, &agent, 20), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        h.post(
            &format!("/policies/{policy}/run"),
            &Auth::tenant(&t),
            json!({}),
        )
        .await
    });
    assert_eq!(run.status, 201, "{run:?}");
    assert_eq!(answer["tasks"][0]["id"], run.body["id"], "{answer}");

    // Nothing to claim: empty once the wait ends.
    assert_eq!(claim(&h, &agent, 1).await["tasks"], json!([]));
    // Out of range.
    let bad = h
        .call(
            Method::POST,
            &format!("/agents/{}/tasks/claim", agent.id),
            &agent.auth(),
            Some(json!({"limit": 1, "waitSeconds": 61})),
        )
        .await;
    assert_eq!((bad.status, bad.field()), (422, "waitSeconds"), "{bad:?}");
});

server_test!(
    past_max_waiting_claims_a_claim_is_answered_at_once,
    ServerConfig {
        limits: LimitsConfig {
            max_waiting_claims: 1,
            ..LimitsConfig::default()
        },
        ..ServerConfig::default()
    },
    |h| async move {
        let t = h.tenant("acme").await;
        let (a, b) = (h.agent(&t, "a").await, h.agent(&t, "b").await);
        let p = h.policy(&t, backup_policy(a.id)).await;
        let policy = p["id"].as_str().expect("id").to_owned();
        // A waits (the one place); B is answered at once, and only then does run-now wake A.
        let (answer_a, ()) = tokio::join!(claim(&h, &a, 20), async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert_eq!(claim(&h, &b, 20).await["tasks"], json!([]));
            let run = h
                .post(
                    &format!("/policies/{policy}/run"),
                    &Auth::tenant(&t),
                    json!({}),
                )
                .await;
            assert_eq!(run.status, 201, "{run:?}");
        });
        assert_eq!(
            answer_a["tasks"].as_array().map(Vec::len),
            Some(1),
            "{answer_a}"
        );
    }
);

/// Two real servers on one PostgreSQL: run-now on one wakes the claim waiting on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_on_one_replica_wakes_a_claim_waiting_on_another() {
    let Some(db) = backup_testkit::TestDatabase::create().await else {
        return;
    };
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        database: db.url.clone(),
        admin_token: Some(ADMIN.into()),
        ..ServerConfig::default()
    };
    let a = Server::start(config.clone(), Arc::new(SystemClock))
        .await
        .expect("replica a");
    let b = Server::start(config, Arc::new(SystemClock))
        .await
        .expect("replica b");
    let tenant = a
        .state()
        .store()
        .create_tenant("acme")
        .await
        .expect("tenant");
    let (via_a, via_b) = (
        Client::new(Http::new(&a.url())),
        Client::new(Http::new(&b.url())),
    );
    let agent = via_a.create_agent(&tenant, "db-1").await;
    // Due once a year: no tick makes a task while the claim waits.
    let mut spec = backup_policy(agent.id);
    spec["schedule"] = json!({"cron": "0 0 1 1 *"});
    let policy = via_a.create_policy(&tenant, spec).await;
    let path = format!("/agents/{}/tasks/claim", agent.id);
    let auth = agent.auth();
    let (waited, run) = tokio::join!(
        via_a.call(
            "POST",
            &path,
            &auth,
            Some(json!({"limit": 1, "waitSeconds": 20}))
        ),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            via_b.run_now(&tenant, &policy.id.to_string()).await
        }
    );
    assert_eq!(run.status, 201, "{run:?}");
    assert_eq!(waited.status, 200, "{waited:?}");
    assert_eq!(waited.body["tasks"][0]["id"], run.body["id"], "{waited:?}");
    a.shutdown().await;
    b.shutdown().await;
}

server_test!(
    a_claim_returned_by_the_lease_sweep_wakes_a_waiting_claim,
    |h| async move {
        let t = h.tenant("acme").await;
        let agent = h.agent(&t, "db-1").await;
        h.online(&agent).await;
        let p = h.policy(&t, backup_policy(agent.id)).await;
        let policy = p["id"].as_str().expect("id").to_owned();
        let run = h
            .post(
                &format!("/policies/{policy}/run"),
                &Auth::tenant(&t),
                json!({}),
            )
            .await;
        // Claimed, then never started: the agent lost it (a crash before its start).
        let first = claim(&h, &agent, 0).await;
        assert_eq!(first["tasks"][0]["id"], run.body["id"], "{first}");
        // The agent comes back idle and waits; the sweep returns the claim to pending.
        let (answer, ()) = tokio::join!(claim(&h, &agent, 20), async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            h.advance_secs(i64::from(h.config.scheduler.lease_seconds) + 1);
            let tick = h.tick().await;
            assert_eq!(tick.lapses.map(|l| l.returned), Some(1));
        });
        assert_eq!(answer["tasks"][0]["id"], run.body["id"], "{answer}");
        assert_eq!(answer["tasks"][0]["attempt"], 1, "the attempt given back");
    }
);

// Found by the chaos soak (seed 20261203): an idle agent's waiting claim found its backups held
// back by its own check on the same repository, still running on the server because the check's
// result had not arrived yet. The result wakes no one, so the claim slept until the next check's
// task woke it, which held the backups back again: the backups starved for minutes.
server_test!(
    a_waiting_claim_gets_a_backup_once_the_check_holding_it_back_ends,
    |h| async move {
        let t = h.tenant("acme").await;
        let agent = h.agent(&t, "db-1").await;
        let reporting = json!({"runningTasks": 0, "queueDepth": 0,
            "repositories": [{"name": "main", "repositoryId": "5c2a9bb0e1f84a1fb1c0d6a9f3e2d1c0b9a8f7e6d5c4b3a2918273645546372a"}]});
        assert_eq!(h.heartbeat(&agent, reporting).await.status, 200);
        let tenant = Auth::tenant(&t);
        let check = h
            .policy(
                &t,
                json!({"name": "check", "agentId": agent.id.to_string(), "kind": "check",
                    "schedule": {"every": "1h"}, "repository": "main"}),
            )
            .await;
        let backup = h.policy(&t, backup_policy(agent.id)).await;
        let run = |policy: &Value| format!("/policies/{}/run", policy["id"].as_str().expect("id"));
        let check_task = h.post(&run(&check), &tenant, json!({})).await.body;
        let first = claim(&h, &agent, 0).await;
        assert_eq!(first["tasks"][0]["id"], check_task["id"], "{first}");
        let task = check_task["id"].as_str().expect("id").to_owned();
        let started = h
            .post(
                &format!("/tasks/{task}/start"),
                &agent.auth(),
                json!({"attempt": 1}),
            )
            .await;
        assert_eq!(started.status, 200, "{started:?}");
        let backup_task = h.post(&run(&backup), &tenant, json!({})).await.body;
        // Held back while the check runs.
        assert_eq!(claim(&h, &agent, 0).await["tasks"], json!([]));
        // The agent finishes the check and, idle, waits for work before its result arrives.
        let (answer, ()) = tokio::join!(claim(&h, &agent, 20), async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let result = h
                .post(
                    &format!("/tasks/{task}/result"),
                    &agent.auth(),
                    json!({"attempt": 1, "outcome": "succeeded"}),
                )
                .await;
            assert_eq!(result.status, 200, "{result:?}");
        });
        assert_eq!(answer["tasks"][0]["id"], backup_task["id"], "{answer}");
    }
);
