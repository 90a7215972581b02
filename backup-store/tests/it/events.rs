//! The event and audit log, protection and webhook deliveries, on every backend: each change
//! leaves one event naming who did it (never a token), each transition is recorded once also
//! when two replicas find it together, and a delivery is leased to one claimer at a time.

use std::time::Duration;

use backup_core::{
    AttemptOutcome, AttemptReport, CreateWebhook, DeliveryStatus, ErrorClass, EventType, EventView,
    PolicyPatch, Protection, SettingsPatch, TenantId,
};
use backup_store::{
    DeliveryFilter, DeliveryOutcome, EventFilter, PageRequest, PolicyFilter, StoreError,
};

use crate::harness::{Env, backup_every_hour, store_test};

async fn events(env: &Env, tenant: TenantId, event_type: Option<EventType>) -> Vec<EventView> {
    env.store
        .list_events(
            tenant,
            &EventFilter {
                event_type,
                ..EventFilter::default()
            },
            &PageRequest::first(500),
        )
        .await
        .expect("events")
        .items
}

fn webhook(events: &[&str]) -> CreateWebhook {
    CreateWebhook {
        url: "https://hooks.example/fleet".into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        description: None,
    }
}

store_test!(
    every_change_leaves_an_audit_event_naming_the_actor_and_no_token,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        let p = env.policy(&t, backup_every_hour(a.agent.id)).await;
        let patch: SettingsPatch =
            serde_json::from_value(serde_json::json!({"cpuQuotaPercent": 70, "maxRetries": 2}))
                .expect("patch");
        env.store
            .patch_settings(t.id, a.agent.id, &patch)
            .await
            .expect("patch");
        let agent_token = env
            .store
            .rotate_agent_token(t.id, a.agent.id)
            .await
            .expect("rotate");
        let tenant_token = env.store.rotate_tenant_token(t.id).await.expect("rotate");
        let rename = PolicyPatch {
            name: Some("renamed".into()),
            ..PolicyPatch::default()
        };
        env.store
            .update_policy(t.id, p.id, &rename)
            .await
            .expect("update");
        env.store.delete_policy(t.id, p.id).await.expect("delete");

        let all = events(&env, t.id, None).await;
        let types: Vec<&str> = all.iter().rev().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "agent.created",
                "policy.created",
                "agent.settings_changed",
                "agent.token_rotated",
                "tenant.token_rotated",
                "policy.updated",
                "policy.deleted"
            ]
        );
        let text = serde_json::to_string(&all).expect("json");
        for secret in [&a.token, &agent_token, &tenant_token, &t.token] {
            assert!(!text.contains(secret.as_str()), "a token in an event");
        }
        let settings = &all[4];
        assert_eq!(settings.actor, backup_core::Actor::Tenant);
        assert_eq!(settings.subject_id, Some(*a.agent.id.as_uuid()));
        assert_eq!(
            settings.data["changed"],
            serde_json::json!({
                "cpuQuotaPercent": {"old": 50, "new": 70},
                "maxRetries": {"old": 5, "new": 2},
                "settingsSource": {"old": "agent", "new": "api"},
            })
        );
        assert_eq!(
            all[1].data["changed"],
            serde_json::json!({"name": {"old": "hourly", "new": "renamed"}})
        );
        // Another tenant sees none of it.
        let other = env.tenant("other").await;
        assert_eq!(events(&env, other.id, None).await, []);
    }
);

store_test!(
    an_agent_going_quiet_is_recorded_once_and_its_return_once,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await.agent.id;
        env.online(a).await;
        env.advance_secs(181);
        let replica = env.replica().await;
        let (one, two) = tokio::join!(env.store.sweep_transitions(), replica.sweep_transitions());
        let offline = one.expect("sweep").offline + two.expect("sweep").offline;
        assert_eq!(offline, 1, "one transition, one event");
        assert_eq!(
            env.store.sweep_transitions().await.expect("sweep").offline,
            0
        );
        let recorded = events(&env, t.id, Some(EventType::AgentOffline)).await;
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].actor, backup_core::Actor::System);
        // Back: one agent.online, also when two heartbeats race.
        let hb = backup_core::Heartbeat::default();
        let (x, y) = tokio::join!(env.store.heartbeat(a, &hb), replica.heartbeat(a, &hb));
        x.expect("heartbeat");
        y.expect("heartbeat");
        assert_eq!(
            events(&env, t.id, Some(EventType::AgentOnline)).await.len(),
            1
        );
        // A backoff reported is announced once per spell.
        for _ in 0..2 {
            env.heartbeat(a, &crate::harness::repository_backoff("main", 600))
                .await;
        }
        env.online(a).await;
        env.heartbeat(a, &crate::harness::repository_backoff("main", 600))
            .await;
        assert_eq!(
            events(&env, t.id, Some(EventType::AgentBackoffStarted))
                .await
                .len(),
            2
        );
    }
);

store_test!(
    a_policy_turns_overdue_once_and_recovers_with_its_next_success,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await.agent.id;
        env.online(a).await;
        let spec = backup_core::PolicySpec {
            alert_after: Some("10m".into()),
            schedule: backup_core::ScheduleSpec::every("24h"),
            ..backup_every_hour(a)
        };
        let p = env.policy(&t, spec).await;
        assert_eq!(p.protection, Protection::NeverRun);
        assert_eq!(p.effective_alert_after.as_deref(), Some("10m"));
        let overdue = PolicyFilter {
            protection: Some(Protection::Overdue),
            ..PolicyFilter::default()
        };
        env.advance_secs(11 * 60);
        env.online(a).await;
        let replica = env.replica().await;
        let (one, two) = tokio::join!(env.store.sweep_transitions(), replica.sweep_transitions());
        assert_eq!(one.expect("sweep").overdue + two.expect("sweep").overdue, 1);
        let listed = env
            .store
            .list_policies(t.id, &overdue, &PageRequest::default())
            .await
            .expect("list");
        assert_eq!(listed.items.len(), 1);
        assert_eq!(listed.items[0].protection, Protection::Overdue);
        // The next success ends it.
        env.store.schedule_due(true).await.expect("tick");
        let claimed = env.claim_all(a).await;
        assert_eq!(claimed.len(), 1);
        let task = &claimed[0];
        env.store
            .start_task(a, task.id, task.attempt)
            .await
            .expect("start");
        env.store
            .report_result(
                a,
                task.id,
                &AttemptReport::new(task.attempt, AttemptOutcome::Succeeded),
            )
            .await
            .expect("result");
        let view = env.store.get_policy(t.id, p.id).await.expect("policy");
        assert_eq!(view.protection, Protection::Ok);
        let recovered = events(&env, t.id, Some(EventType::PolicyRecovered)).await;
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].data["from"], "overdue");
        assert_eq!(
            events(&env, t.id, Some(EventType::PolicyOverdue))
                .await
                .len(),
            1
        );
        let summary = env.store.summary(t.id).await.expect("summary");
        assert_eq!(summary.policies["ok"], 1);
        assert_eq!(summary.agents["online"], 1);
    }
);

store_test!(
    a_permanent_failure_makes_the_policy_failing_and_is_delivered_to_webhooks_that_want_it,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await.agent.id;
        env.online(a).await;
        let wants = env
            .store
            .create_webhook(t.id, &webhook(&["task.failed_permanently"]))
            .await
            .expect("webhook");
        assert!(wants.secret.starts_with("whsec_") && wants.secret.len() > 60);
        let all = env
            .store
            .create_webhook(t.id, &webhook(&["*"]))
            .await
            .expect("webhook");
        let other = env
            .store
            .create_webhook(t.id, &webhook(&["agent.online"]))
            .await
            .expect("webhook");
        let p = env.policy(&t, backup_every_hour(a)).await;
        let run = env.store.run_policy_now(t.id, p.id).await.expect("run");
        let task = env.claim_all(a).await.remove(0);
        let mut failed = AttemptReport::new(task.attempt, AttemptOutcome::Failed);
        failed.error_kind = Some(ErrorClass::Permanent);
        failed.error = Some("Fatal: wrong password or no key found".into());
        env.store
            .report_result(a, run.id, &failed)
            .await
            .expect("result");
        let view = env.store.get_policy(t.id, p.id).await.expect("policy");
        assert_eq!(view.protection, Protection::Failing);
        let failed_events = events(&env, t.id, Some(EventType::TaskFailedPermanently)).await;
        assert_eq!(failed_events.len(), 1);
        assert_eq!(failed_events[0].data["reason"], "permanent_error");

        let deliveries = |id| {
            let store = env.store.clone();
            async move {
                store
                    .list_deliveries(
                        t.id,
                        id,
                        &DeliveryFilter::default(),
                        &PageRequest::default(),
                    )
                    .await
                    .expect("deliveries")
                    .items
            }
        };
        assert_eq!(deliveries(wants.webhook.id).await.len(), 1);
        assert!(deliveries(all.webhook.id).await.len() >= 3, "every event");
        assert_eq!(deliveries(other.webhook.id).await.len(), 0);

        // One claimer at a time: a claimed delivery is leased.
        let lease = Duration::from_secs(60);
        let first = env.store.claim_deliveries(100, lease).await.expect("claim");
        let mine: Vec<_> = first
            .iter()
            .filter(|d| d.webhook_id == wants.webhook.id)
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].attempt, 1);
        assert_eq!(mine[0].event.event_type, EventType::TaskFailedPermanently);
        let replica = env.replica().await;
        assert_eq!(
            replica
                .claim_deliveries(100, lease)
                .await
                .expect("claim")
                .len(),
            0,
            "leased to the first claimer"
        );
        let base = Duration::from_secs(10);
        let day = Duration::from_secs(24 * 3600);
        let status = env
            .store
            .settle_delivery(
                mine[0],
                &DeliveryOutcome::Failed {
                    status: Some(503),
                    error: "the receiver answered 503".into(),
                },
                base,
                day,
            )
            .await
            .expect("settle");
        assert_eq!(status, DeliveryStatus::Pending);
        let listed = deliveries(wants.webhook.id).await;
        assert_eq!(
            (listed[0].attempts, listed[0].last_status, listed[0].status),
            (1, Some(503), DeliveryStatus::Pending)
        );
        assert!(listed[0].next_attempt_at.is_some());
        // Not before its backoff; after it, attempt 2, delivered.
        let again = env.store.claim_deliveries(100, lease).await.expect("claim");
        assert!(again.iter().all(|d| d.webhook_id != wants.webhook.id));
        env.advance_secs(11);
        let again = env.store.claim_deliveries(100, lease).await.expect("claim");
        let second = again
            .iter()
            .find(|d| d.webhook_id == wants.webhook.id)
            .expect("due again");
        assert_eq!(second.attempt, 2);
        let status = env
            .store
            .settle_delivery(
                second,
                &DeliveryOutcome::Delivered { status: 204 },
                base,
                day,
            )
            .await
            .expect("settle");
        assert_eq!(status, DeliveryStatus::Delivered);
        // A claim that is never settled (a replica killed) is claimed again once its lease lapses.
        env.advance_secs(61);
        let lapsed = env.store.claim_deliveries(100, lease).await.expect("claim");
        assert!(
            lapsed.iter().all(|d| d.webhook_id != wants.webhook.id),
            "delivered stays"
        );
        assert!(
            lapsed
                .iter()
                .any(|d| d.webhook_id == all.webhook.id && d.attempt == 2)
        );

        // A deleted webhook's pending deliveries end; another tenant cannot see it.
        let stranger = env.tenant("other").await;
        let err = env
            .store
            .list_deliveries(
                stranger.id,
                all.webhook.id,
                &DeliveryFilter::default(),
                &PageRequest::default(),
            )
            .await
            .expect_err("another tenant's webhook");
        assert!(matches!(err, StoreError::NotFound(_)));
        env.store
            .delete_webhook(t.id, all.webhook.id)
            .await
            .expect("delete");
        let left = deliveries(all.webhook.id).await;
        assert!(left.iter().all(|d| d.status != DeliveryStatus::Pending));
    }
);
