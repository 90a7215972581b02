//! Two server instances over one PostgreSQL, ticking and claiming together.

use std::collections::HashSet;

use serde_json::json;

use crate::harness::{Auth, Harness, Kind, backup_policy, call};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_task_per_slot_and_no_double_claims() {
    let config = backup_server::ServerConfig {
        scheduler: backup_server::SchedulerConfig {
            agent_queue_threshold: 100_000,
            ..Default::default()
        },
        // The test creates a policy per slot as fast as it can: not what the tenant limit is for.
        limits: backup_server::LimitsConfig {
            tenant_requests_per_second: 0,
            ..Default::default()
        },
        ..Default::default()
    };
    let Some(h) = Harness::open(Kind::Postgres, config).await else {
        return;
    };
    let (state_b, router_b) = h.replica().await;
    let t = h.tenant("acme").await;
    let mut agents = Vec::new();
    for i in 0..4 {
        let agent = h.agent(&t, &format!("agent-{i}")).await;
        h.online(&agent).await;
        agents.push(agent);
    }
    for i in 0..200 {
        let agent = &agents[i % agents.len()];
        let mut spec = backup_policy(agent.id);
        spec["schedule"] = json!({"every": "10m"});
        h.policy(&t, spec).await;
    }
    let mut all_claimed = Vec::new();
    for round in 0..3 {
        let (a, b) = tokio::join!(h.tick(), backup_server::scheduler_tick(&state_b));
        let created = a.schedule.created + b.expect("tick b").schedule.created;
        assert_eq!(
            created, 200,
            "round {round}: one task per policy slot across both replicas"
        );
        // Each agent claims through both replicas at once, repeatedly.
        let mut claims = Vec::new();
        for agent in &agents {
            for router in [&h.router, &router_b, &h.router, &router_b] {
                let path = format!("/agents/{}/tasks/claim", agent.id);
                let auth = Auth::Agent(agent.token.clone());
                let router = router.clone();
                claims.push(tokio::spawn(async move {
                    call(
                        &router,
                        axum::http::Method::POST,
                        &path,
                        &auth,
                        Some(json!({"limit": 20}).to_string().into_bytes()),
                    )
                    .await
                }));
            }
        }
        let mut round_ids = Vec::new();
        for c in claims {
            let answer = c.await.expect("claim");
            assert_eq!(answer.status, 200);
            for task in answer.body["tasks"].as_array().cloned().unwrap_or_default() {
                round_ids.push(task["id"].as_str().expect("id").to_owned());
            }
        }
        all_claimed.extend(round_ids);
        // Whatever the racing claims left (limit 20 each) is claimed now.
        for agent in &agents {
            loop {
                let rest = h.claim(agent, 100).await;
                if rest.is_empty() {
                    break;
                }
                all_claimed.extend(
                    rest.iter()
                        .map(|t| t["id"].as_str().expect("id").to_owned()),
                );
            }
        }
        h.advance_secs(600);
        for agent in &agents {
            h.online(agent).await;
        }
        let tasks = h
            .get("/tasks?status=claimed&limit=500", &Auth::tenant(&t))
            .await;
        assert_eq!(
            tasks.body["items"].as_array().map(Vec::len),
            Some(200),
            "all claimed"
        );
        // Close the round: cancel every claimed task so the policies have no open task.
        for task in tasks.body["items"].as_array().cloned().unwrap_or_default() {
            h.post(
                &format!("/tasks/{}/cancel", task["id"].as_str().expect("id")),
                &Auth::tenant(&t),
                json!({}),
            )
            .await;
        }
    }
    let unique: HashSet<_> = all_claimed.iter().collect();
    assert_eq!(all_claimed.len(), 600, "every task of three rounds claimed");
    assert_eq!(unique.len(), 600, "no task claimed twice");
}
