//! Protection and alerts with the real binaries: an agent killed with -9 is `agent.offline`
//! once within `offlineAfterSeconds` and a tick, and `agent.online` when it is back; a policy
//! past its `alertAfter` is `overdue`, then `recovered` by its next success; a policy whose
//! task fails for good is `failing`. A real HTTP receiver gets every event, signed, also after
//! answering 503 for a while, being unreachable, and the server being killed while it was
//! delivering; on PostgreSQL a second replica runs beside the first and nothing is recorded
//! twice nor delivered twice at once. The audit events of a PATCH, a token rotation and a
//! deletion name the actor and the changed keys, and carry no token.

use std::{collections::BTreeSet, time::Duration};

use serde_json::{Value, json};

use crate::harness::{Api, ServerProc, agent_yaml, e2e_test, wait_for};
use crate::receiver::{Answer, Receiver};

async fn events_of(api: &Api, event_type: &str) -> Vec<Value> {
    api.all(&format!("/events?type={event_type}")).await
}

async fn policy(api: &Api, id: &Value) -> Value {
    api.get(&format!("/policies/{}", id.as_str().expect("id")))
        .await
}

const SERVER_ENV: [(&str, &str); 3] = [
    ("BACKUP_SERVER_NOTIFICATIONS__ALLOW_PRIVATE_TARGETS", "true"),
    ("BACKUP_SERVER_SCHEDULER__OFFLINE_AFTER_SECONDS", "4"),
    ("BACKUP_SERVER_NOTIFICATIONS__RETRY_BASE_SECONDS", "1"),
];

e2e_test!(
    alerts_reach_a_receiver_signed_once_per_transition_and_none_is_lost,
    |world| async move {
        let mut receiver = Receiver::start().await;
        let mut server = ServerProc::start_with_env(&world, "server", &SERVER_ENV);
        let api = server.tenant_api().await;
        // On PostgreSQL, a second replica sweeps and delivers too.
        let second = world
            .database
            .starts_with("postgres")
            .then(|| ServerProc::start_with_env(&world, "server2", &SERVER_ENV));
        let hook = api
            .post("/webhooks", json!({"url": receiver.url(), "events": ["*"]}))
            .await;
        receiver.set_secret(hook["secret"].as_str().expect("secret"));
        let hook_id = hook["id"].as_str().expect("id").to_owned();

        let (repo, pw) = world.repository("repo");
        let data = world.data("data", 2, 10_000);
        let host = api.agent("host1").await;
        let mut agent = agent_yaml(
            &world,
            "agent",
            &server.url,
            &host,
            &[("main", &repo, &pw)],
            "",
        )
        .start(&world);
        let good = api
            .post(
                "/policies",
                json!({"name": "good", "agentId": host.id, "kind": "backup", "schedule": {"every": "24h"},
                       "paths": [data], "repository": "main", "alertAfter": "8s"}),
            )
            .await;
        let bad = api
            .post(
                "/policies",
                json!({"name": "bad", "agentId": host.id, "kind": "backup", "schedule": {"every": "24h"},
                       "paths": [data], "repository": "not-configured"}),
            )
            .await;
        wait_for(
            60,
            "the good policy protected, the bad one failing",
            || async {
                policy(&api, &good["id"]).await["protection"] == "ok"
                    && policy(&api, &bad["id"]).await["protection"] == "failing"
            },
        )
        .await;
        assert_eq!(events_of(&api, "task.failed_permanently").await.len(), 1);

        // The agent dies: offline within offlineAfterSeconds (4) and a tick, exactly once.
        agent.kill9();
        wait_for(15, "agent.offline", || async {
            !events_of(&api, "agent.offline").await.is_empty()
        })
        .await;
        wait_for(15, "policy.overdue", || async {
            !events_of(&api, "policy.overdue").await.is_empty()
        })
        .await;
        assert_eq!(policy(&api, &good["id"]).await["protection"], "overdue");
        agent.restart();
        wait_for(30, "agent.online", || async {
            !events_of(&api, "agent.online").await.is_empty()
        })
        .await;
        let run = format!("/policies/{}/run", good["id"].as_str().expect("id"));
        api.post(&run, json!({})).await;
        wait_for(60, "policy.recovered", || async {
            !events_of(&api, "policy.recovered").await.is_empty()
        })
        .await;
        assert_eq!(policy(&api, &good["id"]).await["protection"], "ok");
        for (event_type, n) in [
            ("agent.offline", 1),
            ("agent.online", 1),
            ("policy.overdue", 1),
            ("policy.recovered", 1),
            ("task.failed_permanently", 1),
        ] {
            assert_eq!(events_of(&api, event_type).await.len(), n, "{event_type}");
        }
        // From here the agent is stopped (its token is rotated below).
        assert!(agent.stop(), "the agent stops on SIGTERM");

        // The receiver answers 503, then is unreachable; audit events meanwhile.
        receiver.answer(Answer::Unavailable);
        let settings = format!("/agents/{}/settings", host.id);
        let (status, _) = api
            .call("PATCH", &settings, Some(json!({"cpuQuotaPercent": 60})))
            .await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_secs(3)).await;
        receiver.down();
        let bad_path = format!("/policies/{}", bad["id"].as_str().expect("id"));
        let (status, _) = api.call("DELETE", &bad_path, None).await;
        assert_eq!(status, 204);
        let (status, rotated) = api
            .call("POST", &format!("/agents/{}/token", host.id), None)
            .await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_secs(3)).await;
        receiver.up().await;
        receiver.answer(Answer::Ok);

        // A delivery in flight when the server is killed is delivered after the restart.
        receiver.answer(Answer::Slow(Duration::from_secs(5)));
        let (status, _) = api
            .call("PATCH", &settings, Some(json!({"cpuQuotaPercent": 55})))
            .await;
        assert_eq!(status, 200);
        let patched = events_of(&api, "agent.settings_changed").await;
        let last_patch = patched[0]["id"].as_str().expect("id").to_owned();
        wait_for(
            60,
            "the last PATCH's event arriving at the receiver",
            || async { receiver.arrived().contains(&last_patch) },
        )
        .await;
        server.kill9();
        receiver.answer(Answer::Ok);
        server.restart();

        let all: BTreeSet<String> = api
            .all("/events")
            .await
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        wait_for(120, "every event delivered", || async {
            let delivered: BTreeSet<String> = receiver
                .delivered()
                .iter()
                .map(|e| e.id.to_string())
                .collect();
            all.is_subset(&delivered)
        })
        .await;
        let received = receiver.received();
        assert!(
            received.iter().all(|r| r.signed),
            "every request signed with the secret"
        );
        assert_eq!(
            receiver.overlapping(),
            0,
            "no event delivered twice at once"
        );
        assert!(
            received.iter().any(|r| r.answered == 503),
            "the 503s happened"
        );
        let deliveries = api
            .all(&format!("/webhooks/{hook_id}/deliveries?status=delivered"))
            .await;
        assert!(
            deliveries.len() >= all.len(),
            "each event's delivery settled"
        );
        assert!(deliveries.iter().any(|d| d["attempts"].as_u64() > Some(1)));

        // The audit trail: actor, changed keys, no token.
        let changed = &events_of(&api, "agent.settings_changed").await[1];
        assert_eq!(changed["actor"], "tenant");
        assert_eq!(
            changed["data"]["changed"]["cpuQuotaPercent"],
            json!({"old": 50, "new": 60})
        );
        assert_eq!(
            events_of(&api, "policy.deleted").await[0]["actor"],
            "tenant"
        );
        let rotation = &events_of(&api, "agent.token_rotated").await[0];
        assert_eq!(rotation["actor"], "tenant");
        let text = api
            .all("/events")
            .await
            .iter()
            .map(Value::to_string)
            .collect::<String>();
        for token in [
            rotated["token"].as_str().expect("token"),
            host.token.as_str(),
            api.tenant.token.as_str(),
            hook["secret"].as_str().expect("secret"),
        ] {
            assert!(!text.contains(token), "a secret in the event log");
        }
        drop(second);
    }
);
