//! What the agent refuses whatever the server says: paths outside `allowedPaths`, a prune on an
//! `appendOnly` repository, keep rules below the floor, another host's snapshots, its own
//! secrets in a backup, its environment in restic's, settings out of range, a second agent on
//! its state directory. (The same, end to end with real restic and the real binaries, is in the
//! e2e crate's `guardrails`.)

use std::{path::Path, sync::Arc};

use backup_agent::{Agent, AgentConfig, AgentOptions, Configuration, HttpClient, RepositoryConfig};
use backup_core::{ClaimAnswer, HeartbeatAnswer, SystemClock};
use serde_json::Value;

use crate::harness::{
    ScriptedRunner, Setup, Tampered, backup_policy, env_of, http_client, one_repository,
    policy_query, prune_policy,
};

/// The one task of `policy`, once it has failed.
async fn failed_task(s: &Setup, policy: &Value) -> Value {
    let query = policy_query(policy);
    s.server
        .wait_for_tasks(
            20,
            "the task failed",
            &format!("{query}&status=failed_permanently"),
            1,
        )
        .await;
    s.server.tasks(&query).await.remove(0)
}

fn assert_refused_naming(task: &Value, key: &str) {
    assert_eq!(task["status"], "failed_permanently", "{task}");
    assert_eq!(task["failedPermanently"], true, "never retried: {task}");
    assert_eq!(task["permanentReason"], "permanent_error", "{task}");
    let error = task["lastError"].as_str().unwrap_or_default();
    assert!(error.contains(key), "the error names {key}: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_outside_allowed_paths_fails_permanently_naming_the_key() {
    let mut s = one_repository("fenced", vec![]).await;
    let fence = s.dir.path().join("data");
    std::fs::create_dir_all(&fence).expect("dir");
    s.config
        .repositories
        .get_mut("main")
        .expect("main")
        .allowed_paths = vec![fence.clone()];
    // Outside by a prefix of characters, not of components; then through a symbolic link.
    let near = s.dir.path().join("database");
    std::fs::create_dir_all(&near).expect("dir");
    let link = fence.join("shadow");
    std::os::unix::fs::symlink("/etc", &link).expect("symlink");
    let near_policy = s.backup_of("main", &near).await;
    let running = s.start().await;
    assert_refused_naming(
        &failed_task(&s, &near_policy).await,
        "repositories.main.allowedPaths",
    );
    let link_policy = s
        .server
        .policy(backup_policy(
            s.agent.id,
            "main",
            &[link.to_str().expect("utf8")],
        ))
        .await;
    assert_refused_naming(
        &failed_task(&s, &link_policy).await,
        "repositories.main.allowedPaths",
    );
    // Inside: runs.
    let inside = s.backup_of("main", &fence).await;
    s.server
        .wait_for_success(20, "the backup inside the fence", &inside)
        .await;
    running.stop().await;
    let backups = s.runner.operations();
    assert_eq!(backups.len(), 1, "restic ran only for the path inside");
    assert_eq!(backups[0].args.last().map(String::as_str), fence.to_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_on_an_append_only_repository_fails_permanently_naming_the_key() {
    let mut s = one_repository("append-only", vec![]).await;
    s.config
        .repositories
        .get_mut("main")
        .expect("main")
        .append_only = true;
    let prune = s.server.policy(prune_policy(s.agent.id, "main", 1)).await;
    let running = s.start().await;
    assert_refused_naming(
        &failed_task(&s, &prune).await,
        "repositories.main.appendOnly",
    );
    running.stop().await;
    assert!(s.runner.operations().is_empty(), "restic never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_keeps_at_least_the_floor_and_forgets_only_this_hosts_snapshots() {
    let s = one_repository("floor", vec![]).await;
    let prune = s.server.policy(prune_policy(s.agent.id, "main", 1)).await;
    let running = s.start().await;
    s.server.wait_for_success(20, "the prune ran", &prune).await;
    running.stop().await;
    let forget = s.runner.operations().remove(0);
    assert_eq!(
        &forget.args[..5],
        [
            "forget",
            "--prune",
            "--host=test-host",
            "--keep-last=3",
            "--keep-within=7d"
        ],
        "the policy's keepLast 1 is raised to the default floor: {:?}",
        forget.args
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_key_names_the_agent_to_restic() {
    let mut s = one_repository("named", vec![]).await;
    s.config.host = Some("web-01.example".into());
    let policy = s.backup("main").await;
    let running = s.start().await;
    s.server
        .wait_for_success(20, "the backup ran", &policy)
        .await;
    running.stop().await;
    assert!(
        s.runner.operations()[0]
            .args
            .contains(&"--host=web-01.example".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backup_excludes_the_agents_secrets_and_restic_gets_a_cleared_environment() {
    let mut s = one_repository("secrets", vec![]).await;
    let env_file = s.dir.path().join("main.env");
    std::fs::write(&env_file, "AWS_SECRET_ACCESS_KEY=from-the-file\n").expect("env file");
    let token_file = s.dir.path().join("token");
    std::fs::write(&token_file, s.agent.token.as_bytes()).expect("token file");
    s.config.token_file = Some(token_file.clone());
    {
        let main = s.config.repositories.get_mut("main").expect("main");
        main.env_file = Some(env_file.clone());
        main.env
            .insert("AWS_ACCESS_KEY_ID".into(), "from-the-config".into());
    }
    let policy = s.backup("main").await;
    let running = s.start().await;
    s.server
        .wait_for_success(20, "the backup ran", &policy)
        .await;
    running.stop().await;
    let backup = s.runner.operations().remove(0);
    let state_dir = s.config.state_dir.display().to_string();
    for secret in [
        token_file.display().to_string(),
        s.pw.display().to_string(),
        env_file.display().to_string(),
        state_dir,
    ] {
        assert!(
            backup.args.contains(&format!("--exclude={secret}")),
            "{secret} excluded: {:?}",
            backup.args
        );
    }
    assert!(backup.clear_env, "restic starts from an empty environment");
    let allowed = |name: &str| {
        matches!(
            name,
            "PATH"
                | "HOME"
                | "TMPDIR"
                | "LANG"
                | "LANGUAGE"
                | "RESTIC_REPOSITORY"
                | "RESTIC_PASSWORD_FILE"
                | "RESTIC_CACHE_DIR"
                | "GOMAXPROCS"
                | "BACKUP_AGENT_TASK"
                | "AWS_ACCESS_KEY_ID"
                | "AWS_SECRET_ACCESS_KEY"
        ) || name.starts_with("LC_")
    };
    for (name, value) in &backup.env {
        assert!(allowed(name), "{name} is not passed on to restic");
        assert!(
            !value.contains(&s.agent.token),
            "the token never reaches restic"
        );
    }
    let task = env_of(&backup, backup_agent::TASK_ENV).expect("the task it serves");
    assert!(task.ends_with("/1"), "<task id>/<attempt>: {task}");
    assert_eq!(
        env_of(&backup, "AWS_ACCESS_KEY_ID"),
        Some("from-the-config")
    );
    assert_eq!(
        env_of(&backup, "AWS_SECRET_ACCESS_KEY"),
        Some("from-the-file")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_out_of_range_from_the_server_are_ignored_and_the_agent_keeps_working() {
    let s = one_repository("hostile", vec![]).await;
    // A server that answers heartbeats with `maxConcurrentTasks: 0` (out of range) and
    // claims with three copies of every task it hands out.
    let client = Arc::new(Tampered {
        heartbeat: Some(Box::new(|answer: &mut HeartbeatAnswer| {
            answer.settings.max_concurrent_tasks = 0;
        })),
        claim: Some(Box::new(|answer: &mut ClaimAnswer| {
            let copies: Vec<_> = answer
                .tasks
                .iter()
                .flat_map(|t| [t.clone(), t.clone()])
                .collect();
            answer.tasks.extend(copies);
        })),
        ..Tampered::of(&s.config)
    });
    let policy = s.backup("main").await;
    let running = s.start_with_client(client).await;
    s.server
        .wait_for_success(20, "the backup ran despite maxConcurrentTasks 0", &policy)
        .await;
    let diagnostics = running.agent.diagnostics();
    running.stop().await;
    assert_eq!(
        diagnostics.settings.max_concurrent_tasks, 1,
        "the last good settings stay"
    );
    assert_eq!(
        s.runner.operations().len(),
        1,
        "a task handed out three times ran once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_on_the_same_state_directory_is_refused() {
    let s = one_repository("locked-dir", vec![]).await;
    let running = s.start().await;
    let second = match Agent::start(
        s.config.clone(),
        AgentOptions::default(),
        Arc::new(ScriptedRunner::default()),
        Arc::new(http_client(&s.config)),
        Arc::new(SystemClock),
    )
    .await
    {
        Ok(_) => panic!("a second agent on the same stateDir started"),
        Err(e) => e,
    };
    let text = second.to_string();
    assert!(
        text.contains("another agent is already running") && text.contains("agent.lock"),
        "{text}"
    );
    // The first keeps working.
    let policy = s.backup("main").await;
    s.server
        .wait_for_success(20, "the first agent still backs up", &policy)
        .await;
    running.stop().await;
}

#[test]
fn no_secret_in_a_debug_print_of_the_config_or_the_client() {
    let mut config = AgentConfig {
        agent_id: Some("6c1f0d52-4a4e-4c43-9d1e-0d6f0b1f2a3b".into()),
        token: Some("agent-token-SECRET-1".into()),
        orchestrator_url: "http://user:url-SECRET-2@127.0.0.1:8080".into(),
        ..AgentConfig::default()
    };
    let mut repository = RepositoryConfig::new("s3:https://s3.example/bucket", "/etc/pw");
    repository
        .env
        .insert("AWS_SECRET_ACCESS_KEY".into(), "aws-SECRET-3".into());
    config.repositories.insert("main".into(), repository);
    let client = HttpClient::from_config(&config).expect("client");
    let printed = format!("{config:?} {config:#?} {client:?} {client:#?}");
    for secret in ["agent-token-SECRET-1", "url-SECRET-2", "aws-SECRET-3"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(
        printed.contains("AWS_SECRET_ACCESS_KEY"),
        "names stay: {printed}"
    );
}

#[test]
fn guardrail_keys_are_validated_with_the_key_named() {
    let parse = |repository: &str| {
        AgentConfig::parse(
            &format!(
                "agentId: 6c1f0d52-4a4e-4c43-9d1e-0d6f0b1f2a3b\ntoken: t\nrepositories:\n  main:\n    url: /r\n    passwordFile: /pw\n{repository}"
            ),
            "file agent.yaml",
            |_| None,
        )
    };
    let ok = parse("    allowedPaths: [/srv, /home]\n    appendOnly: true\n    retentionFloor: {keepDaily: 14}\n")
        .expect("valid");
    let main = &ok.repositories["main"];
    assert!(main.append_only);
    assert_eq!(main.retention_floor.keep_daily, Some(14));
    assert_eq!(
        main.retention_floor.keep_last, None,
        "a floor given replaces the default"
    );
    let defaults = parse("").expect("defaults");
    assert_eq!(
        defaults.repositories["main"].retention_floor,
        backup_agent::default_floor()
    );
    assert_eq!(
        defaults.repositories["main"].allowed_paths,
        [Path::new("/")]
    );
    for (yaml, expected) in [
        (
            "    allowedPaths: [srv]\n",
            "repositories.main.allowedPaths",
        ),
        (
            "    allowedPaths: [/srv/../etc]\n",
            "repositories.main.allowedPaths",
        ),
        ("    allowedPaths: []\n", "repositories.main.allowedPaths"),
        (
            "    retentionFloor: {keepLast: 0}\n",
            "repositories.main.retentionFloor: keepLast",
        ),
        (
            "    retentionFloor: {keepLsat: 5}\n",
            "repositories.main.retentionFloor.keepLsat",
        ),
    ] {
        let e = parse(yaml).expect_err(yaml).to_string();
        assert!(
            e.contains(expected) && e.contains("agent.yaml"),
            "{yaml}: {e}"
        );
    }
    let e = AgentConfig::parse(
        "agentId: 6c1f0d52-4a4e-4c43-9d1e-0d6f0b1f2a3b\ntoken: t\nhost: ''\n",
        "file agent.yaml",
        |_| None,
    )
    .expect_err("empty host")
    .to_string();
    assert!(e.starts_with("host:"), "{e}");
}
