//! Both `/metrics` outputs pass `promtool check metrics` (Prometheus's own linter), after a
//! session that fills them: a backup that succeeds and one that fails. Skipped with a notice
//! without promtool (Debian's `prometheus` package); a failure under
//! `BACKUP_TEST_REQUIRE=promtool`.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use crate::harness::{Db, World, backup_every, free_port, one_agent, wait_for};

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        Some("promtool")
    } else {
        backup_testkit::skip(
            "promtool",
            "no promtool on PATH (Debian package prometheus)",
        );
        None
    }
}

/// `promtool check metrics` on `text`: its verdict and what it printed.
fn check(promtool: &str, text: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_metrics_endpoints_pass_promtool() {
    let Some(promtool) = promtool() else {
        return;
    };
    let Some(world) = World::new(Db::Sqlite).await else {
        return;
    };
    // promtool is not lenient: a broken exposition fails it.
    let (ok, _) = check(promtool, "# TYPE x counter\nx_total{a=\"1\" 1\n");
    assert!(!ok, "promtool rejects a broken exposition");

    let metrics_port = free_port();
    let w = one_agent(
        &world,
        "host1",
        (2, 10_000),
        &format!("metricsListen: 127.0.0.1:{metrics_port}\n"),
    )
    .await;
    for (name, repository) in [("good", "main"), ("bad", "no-such-repository")] {
        let body = backup_every(name, &w.agent, "1h", &w.data, repository);
        w.api.post("/policies", body).await;
    }
    wait_for(90, "one run succeeded and one failed", || async {
        let runs = w.api.all("/backup-runs").await;
        runs.iter().any(|r| r["status"] == "succeeded")
            && runs.iter().any(|r| r["status"] == "failed")
    })
    .await;

    let http = reqwest::Client::new();
    for (who, url, family) in [
        (
            "server",
            format!("{}/metrics", w.server.url),
            "backup_server_",
        ),
        (
            "agent",
            format!("http://127.0.0.1:{metrics_port}/metrics"),
            "backup_agent_tasks_total",
        ),
    ] {
        let answer = http.get(&url).send().await.expect("metrics");
        assert_eq!(answer.status().as_u16(), 200, "{who}");
        let text = answer.text().await.expect("text");
        assert!(
            text.contains(family),
            "the {who}'s metrics hold {family}:\n{text}"
        );
        let (ok, said) = check(promtool, &text);
        assert!(
            ok && said.trim().is_empty(),
            "promtool on the {who}'s /metrics: {said}\n{text}"
        );
        // Prometheus itself asks for OpenMetrics, and gets it under its own content type.
        let answer = http
            .get(&url)
            .header(
                "Accept",
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )
            .send()
            .await
            .expect("metrics");
        let content_type = answer.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        assert!(
            answer.text().await.expect("text").ends_with("# EOF\n"),
            "{who}"
        );
    }
}
