//! The agent's configuration: the seed's file verbatim, DESIGN's keys, the environment, errors.

use backup_agent::Configuration as _;
use backup_agent::{AgentConfig, env_name};

/// `agent.yaml` exactly as the seed (EPIC-15) shows it.
const SEED_AGENT_YAML: &str = "orchestratorUrl: http://localhost:8080
pollingIntervalSeconds: 30
heartbeatIntervalSeconds: 60

# New concurrency settings
maxConcurrentTasks: 2
maxConcurrentBackups: 1
maxConcurrentChecks: 1
maxConcurrentPrunes: 1
cpuQuotaPercent: 50
bandwidthLimitMbps: 20

# New retry settings
maxRetries: 5
maxBackoffMinutes: 60
";

use backup_testkit::vars as env;

#[test]
fn the_seed_file_loads_verbatim() {
    let c = AgentConfig::parse(SEED_AGENT_YAML, "agent.yaml", env(&[])).expect("seed yaml loads");
    assert_eq!(c.orchestrator_url, "http://localhost:8080");
    assert_eq!(
        (c.polling_interval_seconds, c.heartbeat_interval_seconds),
        (30, 60)
    );
    let p = c.proposed_settings();
    assert_eq!(
        (
            p.max_concurrent_tasks,
            p.bandwidth_limit_mbps,
            p.max_backoff_minutes
        ),
        (Some(2), Some(Some(20)), Some(60))
    );
    // DESIGN's defaults for what the seed does not set.
    assert_eq!(c.state_dir, std::path::PathBuf::from("./agent-state"));
    assert_eq!(c.restic_binary, std::path::PathBuf::from("restic"));
    assert_eq!(c.task_timeout_minutes, 360);
    assert!(c.metrics_listen.is_none());
    // agentId and token are needed to run, with a message that says how to give them.
    let e = c.resolve_token().expect_err("no token").to_string();
    assert!(e.contains("BACKUP_AGENT_TOKEN"), "{e}");
}

#[test]
fn environment_overrides_with_the_documented_names() {
    assert_eq!(
        env_name("maxConcurrentTasks"),
        "BACKUP_AGENT_MAX_CONCURRENT_TASKS"
    );
    assert_eq!(env_name("orchestratorUrl"), "BACKUP_AGENT_ORCHESTRATOR_URL");
    let c = AgentConfig::parse(
        SEED_AGENT_YAML,
        "agent.yaml",
        env(&[
            ("BACKUP_AGENT_MAX_CONCURRENT_TASKS", "4"),
            ("BACKUP_AGENT_BANDWIDTH_LIMIT_MBPS", "null"),
            (
                "BACKUP_AGENT_AGENT_ID",
                "6f8c3f5e-94c4-4b8a-9a53-5b1b0d8d3b1e",
            ),
        ]),
    )
    .expect("loads");
    assert_eq!(c.max_concurrent_tasks, Some(4));
    assert_eq!(c.bandwidth_limit_mbps, None);
    assert!(c.resolve_agent_id().is_ok());
}

#[test]
fn restores_write_under_the_state_directory_unless_the_file_says_otherwise() {
    let c =
        AgentConfig::parse("stateDir: /var/lib/agent\n", "agent.yaml", env(&[])).expect("loads");
    assert_eq!(
        c.restore_targets(),
        [std::path::PathBuf::from("/var/lib/agent/restores")]
    );
    let c = AgentConfig::parse(
        "restoreTargets: [/srv/restores]\n",
        "agent.yaml",
        env(&[("BACKUP_AGENT_RESTORE_TARGETS", "/mnt/a:/mnt/b")]),
    )
    .expect("loads");
    assert_eq!(
        c.restore_targets(),
        [
            std::path::PathBuf::from("/mnt/a"),
            std::path::PathBuf::from("/mnt/b")
        ]
    );
    let e = AgentConfig::parse("restoreTargets: [restores]\n", "file agent.yaml", env(&[]))
        .expect_err("relative")
        .to_string();
    assert!(
        e.starts_with("restoreTargets:") && e.contains("file agent.yaml"),
        "{e}"
    );
}

#[test]
fn errors_name_key_value_range_and_source() {
    let e = AgentConfig::parse("cpuQuotaPercent: 150\n", "file agent.yaml", env(&[]))
        .expect_err("out of range")
        .to_string();
    assert!(
        e.contains("cpuQuotaPercent")
            && e.contains("150")
            && e.contains("1-100")
            && e.contains("agent.yaml"),
        "{e}"
    );
    let e = AgentConfig::parse(
        "",
        "file agent.yaml",
        env(&[("BACKUP_AGENT_MAX_CONCURRENT_TASKS", "99")]),
    )
    .expect_err("range")
    .to_string();
    assert!(
        e.contains("maxConcurrentTasks")
            && e.contains("99")
            && e.contains("1-64")
            && e.contains("BACKUP_AGENT_MAX_CONCURRENT_TASKS"),
        "{e}"
    );
    let e = AgentConfig::parse(
        "",
        "file agent.yaml",
        env(&[("BACKUP_AGENT_POLLING_INTERVAL_SECONDS", "soon")]),
    )
    .expect_err("nan")
    .to_string();
    assert!(
        e.contains("pollingIntervalSeconds")
            && e.contains("soon")
            && e.contains("1-86400")
            && e.contains("BACKUP_AGENT_POLLING_INTERVAL_SECONDS"),
        "the range too: {e}"
    );
    let e = AgentConfig::parse("cpuQuotaPercent: 50.5\n", "file agent.yaml", env(&[]))
        .expect_err("a fraction")
        .to_string();
    assert!(
        e.contains("cpuQuotaPercent") && e.contains("not a whole number") && e.contains("1-100"),
        "{e}"
    );
    let e = AgentConfig::parse(
        "maxConcurrentBackups: 3\nmaxConcurrentTasks: 2\n",
        "file agent.yaml",
        env(&[]),
    )
    .expect_err("cross field")
    .to_string();
    assert!(
        e.contains("maxConcurrentBackups") && e.contains("at most maxConcurrentTasks"),
        "{e}"
    );
    let e = AgentConfig::parse("maxConcurency: 3\n", "file agent.yaml", env(&[]))
        .expect_err("typo")
        .to_string();
    assert!(e.contains("maxConcurency"), "{e}");
    let e = AgentConfig::parse(
        "repositories:\n  main:\n    url: /srv/repo\n",
        "file agent.yaml",
        env(&[]),
    )
    .expect_err("no password")
    .to_string();
    assert!(
        e.contains("repositories.main") && e.contains("passwordFile"),
        "{e}"
    );
    let e = AgentConfig::parse("orchestratorUrl: ftp://x\n", "file agent.yaml", env(&[]))
        .expect_err("scheme")
        .to_string();
    assert!(e.contains("orchestratorUrl"), "{e}");
}

#[test]
fn repositories_with_env_and_env_file() {
    let yaml = "repositories:\n  offsite:\n    url: s3:https://s3.example/bucket\n    passwordFile: /etc/restic/pw\n    env:\n      AWS_ACCESS_KEY_ID: AKIA\n    envFile: /etc/restic/offsite.env\n    initIfMissing: true\n";
    let c = AgentConfig::parse(yaml, "agent.yaml", env(&[])).expect("loads");
    let r = &c.repositories["offsite"];
    assert_eq!(
        r.env.get("AWS_ACCESS_KEY_ID").map(String::as_str),
        Some("AKIA")
    );
    assert!(r.init_if_missing);
    let parsed =
        backup_agent::parse_env_file("# comment\nexport A=1\nB=\"two words\"\n\nbad line\n");
    assert_eq!(
        parsed,
        vec![
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "two words".to_owned())
        ]
    );
}

#[test]
fn bandwidth_null_proposes_unlimited_and_absent_proposes_nothing() {
    let proposal = |yaml: &str, vars: &[(&str, &str)]| {
        AgentConfig::parse(yaml, "file agent.yaml", env(vars))
            .expect("valid")
            .proposed_settings()
            .bandwidth_limit_mbps
    };
    assert_eq!(proposal("bandwidthLimitMbps: 20\n", &[]), Some(Some(20)));
    assert_eq!(
        proposal("bandwidthLimitMbps: null\n", &[]),
        Some(None),
        "an adopted limit can be lifted from the file"
    );
    assert_eq!(
        proposal("", &[("BACKUP_AGENT_BANDWIDTH_LIMIT_MBPS", "unlimited")]),
        Some(None)
    );
    assert_eq!(proposal("", &[]), None, "a key left out proposes nothing");
}

#[test]
fn env_files_keep_a_dollar_in_single_quotes_and_warn_where_it_expands() {
    let logs = backup_testkit::capture_logs(|| {
        let parsed = backup_agent::parse_env_file("SECRET='pa$$word'\nPLAIN=a$b\n");
        assert_eq!(parsed[0], ("SECRET".to_owned(), "pa$$word".to_owned()));
        assert_ne!(
            parsed[1].1, "a$b",
            "outside single quotes a $ expands, as in any .env file"
        );
    });
    assert!(
        logs.contains("line=2") && logs.contains("single quotes"),
        "the expanding line is named: {logs}"
    );
    assert!(!logs.contains("line=1"), "{logs}");
}

#[test]
fn the_shipped_example_file_loads_with_its_guardrails() {
    let yaml = include_str!("../../../examples/config/agent.yaml");
    let c = AgentConfig::parse(yaml, "examples/config/agent.yaml", env(&[])).expect("loads");
    let main = &c.repositories["main"];
    assert_eq!(main.allowed_paths.len(), 3, "{main:?}");
    assert_eq!(main.retention_floor.keep_within_days, Some(7));
    assert!(c.repositories["offsite"].append_only);
}
