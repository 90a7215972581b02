//! `retention.historyDays`: the server's purge deletes finished tasks older than that, keeps the
//! ones inside it and open ones, and does nothing at 0.

use backup_server::{RetentionConfig, ServerConfig};

use crate::harness::{Auth, Harness, backup_policy, server_test};

/// A cancelled (finished) task of a fresh policy, and the policy's id.
async fn finished_task(h: &Harness, auth: &Auth, policy: &str) -> String {
    let run = h
        .post(
            &format!("/policies/{policy}/run"),
            auth,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(run.status, 201, "{run:?}");
    let task = run.body["id"].as_str().expect("id").to_owned();
    let cancelled = h.cancel(&task, auth).await;
    assert!(cancelled.status < 300, "{cancelled:?}");
    task
}

server_test!(
    history_past_its_days_is_purged_and_the_rest_stays,
    ServerConfig {
        retention: RetentionConfig { history_days: 1 },
        ..ServerConfig::default()
    },
    |h| async move {
        let t = h.tenant("acme").await;
        let auth = Auth::tenant(&t);
        let a = h.agent(&t, "db-1").await;
        let p = h.policy(&t, backup_policy(a.id)).await;
        let policy = p["id"].as_str().expect("id");
        let old = finished_task(&h, &auth, policy).await;
        h.advance_secs(2 * 24 * 3600);
        let recent = finished_task(&h, &auth, policy).await;
        h.advance_secs(1);
        let open = h
            .post(
                &format!("/policies/{policy}/run"),
                &auth,
                serde_json::json!({}),
            )
            .await;
        let open = open.body["id"].as_str().expect("id").to_owned();

        backup_server::purge_history(&h.state).await;
        assert_eq!(h.get(&format!("/tasks/{old}"), &auth).await.status, 404);
        for kept in [&recent, &open] {
            assert_eq!(h.get(&format!("/tasks/{kept}"), &auth).await.status, 200);
        }
        // Days later, the open task still stays.
        h.advance_secs(10 * 24 * 3600);
        backup_server::purge_history(&h.state).await;
        assert_eq!(h.get(&format!("/tasks/{recent}"), &auth).await.status, 404);
        assert_eq!(h.get(&format!("/tasks/{open}"), &auth).await.status, 200);
    }
);

server_test!(
    history_days_zero_keeps_everything,
    ServerConfig {
        retention: RetentionConfig { history_days: 0 },
        ..ServerConfig::default()
    },
    |h| async move {
        let t = h.tenant("acme").await;
        let auth = Auth::tenant(&t);
        let a = h.agent(&t, "db-1").await;
        let p = h.policy(&t, backup_policy(a.id)).await;
        let old = finished_task(&h, &auth, p["id"].as_str().expect("id")).await;
        h.advance_secs(10_000 * 24 * 3600);
        backup_server::purge_history(&h.state).await;
        assert_eq!(h.get(&format!("/tasks/{old}"), &auth).await.status, 200);
    }
);
