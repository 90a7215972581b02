//! Limits as the process table shows them.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::json;

use crate::harness::{
    ResticProc, ServerProc, agent_yaml, e2e_test, one_agent, restic_processes, wait_for, working,
};

/// Samples the process table until stopped; returns every sample of this test's restic work.
fn sampler(marker: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Vec<ResticProc>>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            samples.push(working(&restic_processes(&marker)));
            std::thread::sleep(Duration::from_millis(20));
        }
        samples
    })
}

e2e_test!(
    twelve_policies_never_more_than_two_restic_and_checks_alone,
    |world| async move {
        let server = ServerProc::start(&world, "server");
        let api = server.tenant_api().await;
        let (repo_a, pw_a) = world.repository("repo-a");
        let (repo_b, pw_b) = world.repository("repo-b");
        let data = world.data("data", 2, 400_000);
        let agent = api.agent("busy").await;
        let marker = world.marker();
        let stop = Arc::new(AtomicBool::new(false));
        let watching = sampler(marker, stop.clone());
        let mut a = agent_yaml(
            &world,
            "agent",
            &server.url,
            &agent,
            &[("a", &repo_a, &pw_a), ("b", &repo_b, &pw_b)],
            "maxConcurrentTasks: 2\nmaxConcurrentBackups: 2\nmaxConcurrentChecks: 1\nmaxConcurrentPrunes: 1\nbandwidthLimitMbps: 8\n",
        )
        .start(&world);
        let mut policies = Vec::new();
        for i in 0..12 {
            let repo = if i % 2 == 0 { "a" } else { "b" };
            let body = match i {
                0..8 => json!({"kind": "backup", "paths": [data], "repository": repo}),
                8..10 => json!({"kind": "check", "repository": repo}),
                _ => json!({"kind": "prune", "repository": repo, "retention": {"keepLast": 10}}),
            };
            let mut body = body;
            body["name"] = json!(format!("policy-{i}"));
            body["agentId"] = json!(agent.id);
            body["schedule"] = json!({"every": "1h"});
            policies.push(
                api.post("/policies", body).await["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            );
        }
        wait_for(240, "every policy's task to succeed", || async {
            api.all("/tasks?status=succeeded").await.len() == 12
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        let samples = watching.join().expect("sampler");
        assert!(a.stop());
        let most = samples.iter().map(Vec::len).max().unwrap_or(0);
        assert_eq!(
            most,
            2,
            "maxConcurrentTasks 2: reached, never passed ({} samples)",
            samples.len()
        );
        let mut saw_exclusive = false;
        for sample in &samples {
            for p in sample.iter().filter(|p| p.operation != "backup") {
                saw_exclusive = true;
                let beside: Vec<_> = sample
                    .iter()
                    .filter(|o| o.pid != p.pid && o.repository == p.repository)
                    .collect();
                assert!(
                    beside.is_empty(),
                    "{} ran beside {beside:?} on {}",
                    p.operation,
                    p.repository
                );
            }
        }
        assert!(saw_exclusive, "the sampler saw a check or prune run");
    }
);

e2e_test!(
    a_settings_patch_reaches_the_running_agent_within_one_heartbeat,
    |world| async move {
        let mut w = one_agent(
            &world,
            "tuned",
            (1, 3_000_000),
            "maxConcurrentTasks: 1\nmaxConcurrentBackups: 1\ncpuQuotaPercent: 50\nbandwidthLimitMbps: 2\n",
        )
        .await;
        let marker = world.marker();
        for i in 0..4 {
            w.backup_every(&format!("slow-{i}"), "1h").await;
        }
        wait_for(60, "one backup running", || async {
            working(&restic_processes(&marker)).len() == 1
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = working(&restic_processes(&marker));
        assert_eq!(before.len(), 1, "the limit holds: {before:?}");
        assert_eq!(before[0].nice, 10, "cpuQuotaPercent 50 -> niceness 10");
        w.patch_settings(
            json!({"maxConcurrentTasks": 3, "maxConcurrentBackups": 3, "cpuQuotaPercent": 100}),
        )
        .await;
        // Within one heartbeat, counted in heartbeats (the agent rewrites diagnostics.json at
        // each): one may have been in flight during the PATCH, the next carries the settings,
        // and it has been applied once a third is.
        let patched_at = chrono::Utc::now();
        let beats = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        wait_for(60, "three heartbeats after the PATCH", || {
            let d = w.process.diagnostics();
            if let Some(at) = d["lastHeartbeatAt"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                && at > patched_at
            {
                beats.lock().expect("lock").insert(at);
            }
            let enough = beats.lock().expect("lock").len() >= 3;
            async move { enough }
        })
        .await;
        assert_eq!(
            w.process.diagnostics()["settings"]["maxConcurrentTasks"],
            3,
            "applied by the first heartbeat sent after the PATCH"
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        wait_for(60, "three backups after the PATCH", || {
            let seen = seen.clone();
            let marker = marker.clone();
            async move {
                let now = working(&restic_processes(&marker));
                let n = now.len();
                *seen.lock().expect("lock") = now;
                n == 3
            }
        })
        .await;
        let now = seen.lock().expect("lock").clone();
        let newcomers: Vec<_> = now.iter().filter(|p| p.pid != before[0].pid).collect();
        assert_eq!(newcomers.len(), 2);
        assert!(
            newcomers.iter().all(|p| p.nice == 0),
            "processes started after the PATCH run at niceness 0: {newcomers:?}"
        );
        assert!(w.process.stop());
    }
);
