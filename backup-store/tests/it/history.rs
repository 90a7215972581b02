//! History retention on every backend: finished tasks (with their runs) and events older than
//! the cut go; open work, recent history and events a webhook has still to deliver stay.

use backup_core::{AttemptOutcome, AttemptReport, Clock, CreateWebhook, TaskStatus};
use backup_store::{BackupRunFilter, EventFilter, PageRequest, StoreError};
use chrono::TimeDelta;

use crate::harness::{Env, backup_every_hour, store_test};

async fn event_count(env: &Env, tenant: backup_core::TenantId) -> usize {
    env.store
        .list_events(tenant, &EventFilter::default(), &PageRequest::first(500))
        .await
        .expect("events")
        .items
        .len()
}

store_test!(
    history_older_than_the_cut_goes_and_open_work_stays,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await.agent.id;
        env.online(a).await;
        let before_webhook = event_count(&env, t.id).await;
        // Every event from here on has a pending delivery.
        let hook = env
            .store
            .create_webhook(
                t.id,
                &CreateWebhook {
                    url: "https://hooks.example/fleet".into(),
                    events: vec!["*".into()],
                    description: None,
                },
            )
            .await
            .expect("webhook");
        let p = env.policy(&t, backup_every_hour(a)).await;
        // An old task that finished, and an old one that is still open.
        let done = env.store.run_policy_now(t.id, p.id).await.expect("run");
        let claimed = env.claim_all(a).await.remove(0);
        env.store
            .start_task(a, done.id, claimed.attempt)
            .await
            .expect("start");
        env.store
            .report_result(
                a,
                done.id,
                &AttemptReport::new(claimed.attempt, AttemptOutcome::Succeeded),
            )
            .await
            .expect("result");
        env.advance_secs(1);
        let open = env.store.run_policy_now(t.id, p.id).await.expect("run");
        let old_events = event_count(&env, t.id).await;
        assert!(old_events > before_webhook);

        // Thirty days later, history older than a day is purged.
        env.advance_secs(30 * 24 * 3600);
        let cut = env.clock.now() - TimeDelta::days(1);
        let (tasks, events) = env.store.purge_history(cut, 1000).await.expect("purge");
        assert_eq!(tasks, 1, "only the finished task");
        assert!(matches!(
            env.store.get_task(t.id, done.id).await,
            Err(StoreError::NotFound(_))
        ));
        let runs = env
            .store
            .list_backup_runs(t.id, &BackupRunFilter::default(), &PageRequest::default())
            .await
            .expect("runs")
            .items;
        assert!(
            runs.iter().all(|r| r.task_id != done.id),
            "its runs went too"
        );
        assert_eq!(env.task_status(t.id, open.id).await, TaskStatus::Pending);
        // Events that still wait for delivery stay; the ones before the webhook went.
        assert_eq!(
            u64::try_from(before_webhook).expect("count"),
            events,
            "only the events no webhook waits for"
        );
        assert_eq!(event_count(&env, t.id).await, old_events - before_webhook);

        // Once the webhook is gone its deliveries end, and its events can go.
        env.store
            .delete_webhook(t.id, hook.webhook.id)
            .await
            .expect("delete");
        let (tasks, events) = env.store.purge_history(cut, 1000).await.expect("purge");
        assert_eq!(tasks, 0, "the open task stays");
        assert!(events > 0);
        let left = env
            .store
            .list_events(t.id, &EventFilter::default(), &PageRequest::first(500))
            .await
            .expect("events")
            .items;
        assert!(left.iter().all(|e| e.time >= cut), "only today's remain");
        assert_eq!(
            env.store.purge_history(cut, 1000).await.expect("purge"),
            (0, 0)
        );
        env.store
            .get_policy(t.id, p.id)
            .await
            .expect("the policy outlives its history");
    }
);
