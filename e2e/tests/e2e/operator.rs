//! What an operator sees in the first hour: the agent says where it runs and what it talks to,
//! an idle agent logs no false failure, the token is rotated without a restart, the CLI says
//! which database it wrote, and diagnostics say which file they read.

use std::{process::Command, time::Duration};

use serde_json::{Value, json};

use crate::harness::{
    ADMIN, Db, ServerProc, World, agent_yaml, bin, e2e_test, one_agent, wait_for,
};

e2e_test!(
    the_agent_says_where_it_runs_and_what_it_talks_to,
    |world| async move {
        let w = one_agent(&world, "host1", (1, 1000), "").await;
        wait_for(30, "the agent's first heartbeat", || async {
            w.process.log().contains("backup-agent running")
        })
        .await;
        let log = w.process.log();
        let line = log
            .lines()
            .find(|l| l.contains("backup-agent running"))
            .expect("the start-up line");
        for expected in [
            format!("server={}", w.server.url),
            format!("agent={}", w.agent.id),
            format!("state_dir={}", w.process.state_dir.display()),
            "restic=0.".to_owned(),
        ] {
            assert!(line.contains(&expected), "{expected:?} in {line}");
        }
    }
);

/// With the server's default idle cut-off (10 s) and an agent polling every 10 s, five minutes
/// without a single failed call (the agent drops idle connections first, and sends a call safe
/// to repeat again when a connection closes before any answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_polling_every_ten_seconds_logs_no_false_failure() {
    let Some(world) = World::new(Db::Sqlite).await else {
        return;
    };
    let server = ServerProc::start(&world, "idle-server");
    let api = server.tenant_api().await;
    let (repo, pw) = world.repository("repo");
    let agent = api.agent("idle").await;
    let mut yaml = agent_yaml(
        &world,
        "idle",
        &server.url,
        &agent,
        &[("main", &repo, &pw)],
        "",
    );
    yaml.yaml = yaml
        .yaml
        .replace(
            "pollingIntervalSeconds: 1\n",
            "pollingIntervalSeconds: 10\n",
        )
        .replace(
            "heartbeatIntervalSeconds: 1\n",
            "heartbeatIntervalSeconds: 10\n",
        );
    let mut process = yaml.start(&world);
    tokio::time::sleep(Duration::from_secs(300)).await;
    let log = process.log();
    assert!(process.stop());
    let calls = log.lines().count();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(
        warnings.is_empty(),
        "no failure in five minutes: {warnings:#?}"
    );
    assert!(calls > 0, "the agent logged its start: {log}");
    let seen = api
        .client
        .get(
            &format!("/agents/{}", agent.id),
            &backup_testkit::Auth::tenant(&api.tenant),
        )
        .await;
    assert_eq!(seen.body["status"], "online", "{seen:?}");
}

e2e_test!(
    a_token_rotated_in_its_file_is_taken_on_sighup,
    |world| async move {
        let server = ServerProc::start(&world, "server");
        let api = server.tenant_api().await;
        let (repo, pw) = world.repository("repo");
        let agent = api.agent("rotating").await;
        let token_file = world.path("agent.token");
        std::fs::write(&token_file, &agent.token).expect("token file");
        let mut yaml = agent_yaml(
            &world,
            "agent",
            &server.url,
            &agent,
            &[("main", &repo, &pw)],
            "",
        );
        yaml.yaml = yaml.yaml.replace(
            &format!("token: {}\n", agent.token),
            &format!("tokenFile: {}\n", token_file.display()),
        );
        let process = yaml.start(&world);
        wait_for(30, "the first heartbeat", || async {
            api.all("/agents").await[0]["lastHeartbeatAt"].is_string()
        })
        .await;
        let rotated = api
            .post(&format!("/agents/{}/token", agent.id), json!({}))
            .await;
        std::fs::write(&token_file, rotated["token"].as_str().expect("token")).expect("new token");
        let pid = nix::unistd::Pid::from_raw(process.pid().expect("running") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
        wait_for(30, "the new token read", || async {
            process.log().contains("SIGHUP: read a new token")
        })
        .await;
        let before = process.log().matches("server answered 401").count();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            process.log().matches("server answered 401").count(),
            before,
            "no 401 once the new token is in use"
        );
    }
);

e2e_test!(the_cli_says_which_database_it_wrote, |world| async move {
    let database = &world.database;
    let tenant = |args: &[&str]| {
        Command::new(bin("backup-server"))
            .arg("tenant")
            .args(args)
            .env("BACKUP_SERVER_DATABASE", database)
            .env("BACKUP_SERVER_ADMIN_TOKEN", ADMIN)
            .output()
            .expect("backup-server tenant")
    };
    let created = tenant(&["create", "--name", "acme"]);
    assert!(created.status.success(), "{created:?}");
    let log = String::from_utf8_lossy(&created.stderr);
    let shown = database.split('@').next_back().unwrap_or(database);
    assert!(
        log.contains("tenant created") && log.contains(shown),
        "{log}"
    );
    let body: Value = serde_json::from_slice(&created.stdout).expect("json");
    assert!(body["token"].is_string());
    let again = tenant(&["create", "--name", "acme"]);
    assert!(!again.status.success(), "a second acme is refused");
    let refusal = String::from_utf8_lossy(&again.stderr);
    assert!(
        refusal.contains("exists already") && refusal.contains("--allow-duplicate-name"),
        "{refusal}"
    );
    let forced = tenant(&["create", "--name", "acme", "--allow-duplicate-name"]);
    assert!(forced.status.success(), "{forced:?}");
    let listed = tenant(&["list"]);
    let tenants: Value = serde_json::from_slice(&listed.stdout).expect("json");
    let names: Vec<&str> = tenants
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["acme", "acme"]);
    assert!(
        tenants[0].get("token").is_none(),
        "a list never shows a token"
    );
});

e2e_test!(
    diagnostics_say_which_file_they_read_and_how_old_it_is,
    |world| async move {
        let mut w = one_agent(&world, "host1", (1, 1000), "").await;
        wait_for(30, "diagnostics written", || async {
            !w.process.diagnostics().is_null()
        })
        .await;
        assert!(w.process.stop());
        let config = world.path("agent.yaml");
        let out = Command::new(bin("backup-agent"))
            .arg("--config")
            .arg(&config)
            .arg("diagnostics")
            .output()
            .expect("backup-agent diagnostics");
        assert!(out.status.success(), "{out:?}");
        let note = String::from_utf8_lossy(&out.stderr);
        assert!(
            note.contains("diagnostics.json") && note.contains("s ago"),
            "the note says which file and how old: {note}"
        );
        let json: Value = serde_json::from_slice(&out.stdout).expect("the diagnostics");
        assert!(json["agentVersion"].is_string());
    }
);
