//! A real backup-server in process (SQLite, 1 s ticks) and agents pointed at it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use backup_agent::{
    Agent, AgentConfig, AgentOptions, HttpClient, OrchestratorClient, RepositoryConfig,
    TokioProcessRunner,
};
use backup_core::{
    AgentId, Error, ExitStatus, ProcessControl, ProcessEvent, ProcessOutcome, ProcessRunner,
    ProcessSpec, StopSignal, Stream, SystemClock,
};
use backup_server::{SchedulerConfig, Server, ServerConfig};
use backup_testkit::{Client, Http, TenantApi, TestAgent};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// A server on a temp SQLite file, ticking every second.
pub(crate) struct TestServer {
    pub(crate) server: Option<Server>,
    _dir: tempfile::TempDir,
    pub(crate) url: String,
    /// The API as the test tenant.
    pub(crate) api: TenantApi<Http>,
    pub(crate) config: ServerConfig,
}

pub(crate) fn server_config(dir: &Path, listen: &str) -> ServerConfig {
    ServerConfig {
        listen: listen.into(),
        database: format!("sqlite://{}", dir.join("server.db").display()),
        scheduler: SchedulerConfig {
            tick_seconds: 1,
            lease_seconds: 60,
            offline_after_seconds: 30,
            ..SchedulerConfig::default()
        },
        limits: backup_server::LimitsConfig {
            agent_requests_per_second: 0,
            ..Default::default()
        },
        ..ServerConfig::default()
    }
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("dir");
        let config = server_config(dir.path(), "127.0.0.1:0");
        let server = Server::start(config.clone(), Arc::new(SystemClock))
            .await
            .expect("server");
        let tenant = server
            .state()
            .store()
            .create_tenant("test")
            .await
            .expect("tenant");
        let url = server.url();
        let config = ServerConfig {
            listen: server.addr().to_string(),
            ..config
        };
        TestServer {
            server: Some(server),
            _dir: dir,
            api: TenantApi::new(Client::new(Http::new(&url)), tenant),
            url,
            config,
        }
    }

    /// Stops the server (the agent sees it unreachable).
    pub(crate) async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Starts it again on the same address and database.
    pub(crate) async fn restart(&mut self) {
        let server = Server::start(self.config.clone(), Arc::new(SystemClock))
            .await
            .expect("restart");
        self.server = Some(server);
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        self.api.get(path).await
    }

    /// An agent of the test tenant.
    pub(crate) async fn agent(&self, name: &str) -> TestAgent {
        self.api.agent(name).await
    }

    pub(crate) async fn policy(&self, body: Value) -> Value {
        let (status, body) = self.api.call("POST", "/policies", Some(body)).await;
        assert_eq!(status, 201, "{body}");
        body
    }

    pub(crate) async fn patch_settings(&self, agent: AgentId, body: Value) -> Value {
        let path = format!("/agents/{agent}/settings");
        let (status, body) = self.api.call("PATCH", &path, Some(body)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub(crate) async fn runs(&self, query: &str) -> Vec<Value> {
        self.api.all(&format!("/backup-runs?{query}")).await
    }

    pub(crate) async fn tasks(&self, query: &str) -> Vec<Value> {
        self.api.all(&format!("/tasks?{query}")).await
    }

    /// Run-now of `policy`: the new task.
    pub(crate) async fn run_now(&self, policy: &Value) -> Value {
        let path = format!("/policies/{}/run", id_of(policy));
        let (status, body) = self.api.call("POST", &path, None).await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// `POST path` with `body` as the tenant: the 201's body.
    pub(crate) async fn create(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.api.call("POST", path, Some(body)).await;
        assert_eq!(status, 201, "POST {path}: {answer}");
        answer
    }

    /// Waits until the task `task` (a view) has ended, and returns its view then.
    pub(crate) async fn wait_for_end(&self, secs: u64, what: &str, task: &Value) -> Value {
        let path = format!("/tasks/{}", id_of(task));
        self.wait_for(secs, what, || async {
            let status = self.get(&path).await["status"].clone();
            status != "pending" && status != "claimed" && status != "running"
        })
        .await;
        self.get(&path).await
    }

    /// Waits until `query` lists `n` tasks.
    pub(crate) async fn wait_for_tasks(&self, secs: u64, what: &str, query: &str, n: usize) {
        self.wait_for(secs, what, || async { self.tasks(query).await.len() == n })
            .await;
    }

    /// Waits until `query` lists a task.
    pub(crate) async fn wait_for_any_task(&self, secs: u64, what: &str, query: &str) {
        self.wait_for(secs, what, || async { !self.tasks(query).await.is_empty() })
            .await;
    }

    /// Waits until a task of `policy` has succeeded.
    pub(crate) async fn wait_for_success(&self, secs: u64, what: &str, policy: &Value) {
        let query = policy_query(policy);
        self.wait_for(secs, what, || async {
            self.tasks(&query)
                .await
                .iter()
                .any(|t| t["status"] == "succeeded")
        })
        .await;
    }

    /// Polls `check` every 100 ms until it holds or `secs` pass.
    pub(crate) async fn wait_for<F, Fut>(&self, secs: u64, what: &str, check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        backup_testkit::wait_for(secs, what, check).await;
    }
}

pub(crate) fn backup_policy(agent: AgentId, repository: &str, paths: &[&str]) -> Value {
    backup_testkit::backup_policy(agent, repository, paths)
}

/// An hourly check policy of `agent` on `repository`.
pub(crate) fn check_policy(agent: AgentId, repository: &str) -> Value {
    json!({"name": "check", "agentId": agent, "kind": "check", "schedule": {"every": "1h"}, "repository": repository})
}

/// An hourly prune policy of `agent` on `repository`, keeping the last `keep_last` snapshots.
pub(crate) fn prune_policy(agent: AgentId, repository: &str, keep_last: u32) -> Value {
    json!({"name": "prune", "agentId": agent, "kind": "prune", "schedule": {"every": "1h"}, "repository": repository, "retention": {"keepLast": keep_last}})
}

/// The `id` of an object of the API.
pub(crate) fn id_of(object: &Value) -> &str {
    object["id"].as_str().expect("an id")
}

/// The query for `policy`'s tasks or runs.
pub(crate) fn policy_query(policy: &Value) -> String {
    format!("policyId={}", id_of(policy))
}

/// An agent configuration for `server` with fast intervals and the given repositories.
pub(crate) fn agent_config(
    server: &TestServer,
    agent: &TestAgent,
    state_dir: &Path,
    repositories: &[(&str, &Path, &Path)],
) -> AgentConfig {
    AgentConfig {
        orchestrator_url: server.url.clone(),
        polling_interval_seconds: 1,
        heartbeat_interval_seconds: 1,
        agent_id: Some(agent.id.to_string()),
        token: Some(agent.token.clone()),
        state_dir: state_dir.to_owned(),
        stop_grace_seconds: 2,
        repositories: repositories
            .iter()
            .map(|(name, url, password)| {
                (
                    (*name).to_owned(),
                    RepositoryConfig {
                        init_if_missing: true,
                        ..RepositoryConfig::new(url.display().to_string(), *password)
                    },
                )
            })
            .collect(),
        ..AgentConfig::default()
    }
}

/// A running agent and the handle of its run.
pub(crate) struct RunningAgent {
    pub(crate) agent: Agent,
    pub(crate) run: JoinHandle<()>,
}

impl RunningAgent {
    pub(crate) async fn start(config: AgentConfig, runner: Arc<dyn ProcessRunner>) -> RunningAgent {
        let client = Arc::new(http_client(&config));
        Self::start_with_client(config, runner, client).await
    }

    pub(crate) async fn start_with_client(
        config: AgentConfig,
        runner: Arc<dyn ProcessRunner>,
        client: Arc<dyn OrchestratorClient>,
    ) -> RunningAgent {
        let options = AgentOptions {
            hostname: "test-host".into(),
            cpus: 8,
            ..AgentOptions::default()
        };
        let agent = Agent::start(config, options, runner, client, Arc::new(SystemClock))
            .await
            .expect("agent starts");
        let a = agent.clone();
        let run = tokio::spawn(async move {
            a.run(std::future::pending()).await.expect("agent runs");
        });
        RunningAgent { agent, run }
    }

    pub(crate) async fn stop(self) {
        self.agent.stop();
        tokio::time::timeout(Duration::from_secs(30), self.run)
            .await
            .expect("agent stops in time")
            .expect("agent task");
    }
}

/// A change a test makes to what the server answers.
type Tamper<T> = Box<dyn Fn(&mut T) + Send + Sync>;

/// The HTTP client, with the server's heartbeat and claim answers changed on their way to the
/// agent: a server that lies, or a clock that disagrees, at one seam.
pub(crate) struct Tampered {
    pub(crate) inner: HttpClient,
    pub(crate) heartbeat: Option<Tamper<backup_core::HeartbeatAnswer>>,
    pub(crate) claim: Option<Tamper<backup_core::ClaimAnswer>>,
}

impl Tampered {
    /// The client of `config` with nothing changed yet.
    pub(crate) fn of(config: &AgentConfig) -> Self {
        Self {
            inner: http_client(config),
            heartbeat: None,
            claim: None,
        }
    }
}

#[async_trait]
impl OrchestratorClient for Tampered {
    async fn heartbeat(
        &self,
        heartbeat: &backup_core::Heartbeat,
    ) -> Result<backup_core::HeartbeatAnswer, backup_agent::ClientError> {
        let mut answer = self.inner.heartbeat(heartbeat).await?;
        if let Some(tamper) = &self.heartbeat {
            tamper(&mut answer);
        }
        Ok(answer)
    }

    async fn claim(
        &self,
        request: &backup_core::ClaimRequest,
    ) -> Result<backup_core::ClaimAnswer, backup_agent::ClientError> {
        let mut answer = self.inner.claim(request).await?;
        if let Some(tamper) = &self.claim {
            tamper(&mut answer);
        }
        Ok(answer)
    }

    async fn start(
        &self,
        task: backup_core::TaskId,
        attempt: u32,
    ) -> Result<backup_core::TaskView, backup_agent::ClientError> {
        self.inner.start(task, attempt).await
    }

    async fn report(
        &self,
        task: backup_core::TaskId,
        report: &backup_core::AttemptReport,
    ) -> Result<backup_core::TaskView, backup_agent::ClientError> {
        self.inner.report(task, report).await
    }

    async fn report_snapshots(
        &self,
        repository: &str,
        list: &backup_core::SnapshotList,
    ) -> Result<backup_core::SnapshotsStored, backup_agent::ClientError> {
        self.inner.report_snapshots(repository, list).await
    }
}

pub(crate) fn http_client(config: &AgentConfig) -> HttpClient {
    HttpClient::new(
        &config.orchestrator_url,
        config.resolve_agent_id().expect("id"),
        config.resolve_token().expect("token"),
    )
    .expect("client")
}

pub(crate) fn real_runner() -> Arc<dyn ProcessRunner> {
    Arc::new(TokioProcessRunner::new())
}

/// What a scripted restic call does.
#[derive(Clone, Debug)]
pub(crate) struct Script {
    pub(crate) exit: i32,
    pub(crate) stderr: String,
    pub(crate) stdout: Vec<String>,
    pub(crate) millis: u64,
    /// A stop request arrives, but the process had finished its work: it exits as scripted.
    pub(crate) finishes_when_stopped: bool,
}

impl Script {
    pub(crate) fn ok(millis: u64) -> Script {
        Script { exit: 0, stderr: String::new(), stdout: vec![r#"{"message_type":"summary","files_new":3,"data_added":1024,"total_duration":0.1,"snapshot_id":"abcd1234"}"#.into()], millis, finishes_when_stopped: false }
    }

    pub(crate) fn fail(exit: i32, stderr: &str) -> Script {
        Script {
            exit,
            stderr: stderr.into(),
            stdout: vec![],
            millis: 20,
            finishes_when_stopped: false,
        }
    }
}

/// Operations running now, the most at once, and both per operation name.
type Concurrency = (usize, usize, BTreeMap<String, (usize, usize)>);

/// A runner that plays restic: answers `version`, `cat config`, `unlock`; for backup, check
/// and forget it follows a script chosen by the call's repository, and records every spec and
/// how many "restic" operations ran at once.
#[derive(Default)]
pub(crate) struct ScriptedRunner {
    pub(crate) calls: Mutex<Vec<ProcessSpec>>,
    scripts: Mutex<BTreeMap<String, Vec<Script>>>,
    running: Mutex<Concurrency>,
}

fn op(spec: &ProcessSpec) -> &str {
    spec.args.first().map_or("", String::as_str)
}

pub(crate) fn env_of<'a>(spec: &'a ProcessSpec, key: &str) -> Option<&'a str> {
    spec.env
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl ScriptedRunner {
    /// Scripts for a repository URL; calls take them in order, the last repeats.
    pub(crate) fn script(&self, repository_url: &str, scripts: Vec<Script>) {
        self.scripts
            .lock()
            .expect("lock")
            .insert(repository_url.into(), scripts);
    }

    /// The most operations (backup/check/forget) that ran at once: total, and per operation.
    pub(crate) fn max_concurrent(&self) -> (usize, BTreeMap<String, usize>) {
        let running = self.running.lock().expect("lock");
        (
            running.1,
            running
                .2
                .iter()
                .map(|(k, (_, max))| (k.clone(), *max))
                .collect(),
        )
    }

    /// Operations running right now.
    pub(crate) fn current(&self) -> usize {
        self.running.lock().expect("lock").0
    }

    pub(crate) fn operations(&self) -> Vec<ProcessSpec> {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| matches!(op(s), "backup" | "check" | "forget"))
            .cloned()
            .collect()
    }

    fn next_script(&self, url: &str) -> Script {
        let mut scripts = self.scripts.lock().expect("lock");
        match scripts.get_mut(url) {
            Some(list) if list.len() > 1 => list.remove(0),
            Some(list) if list.len() == 1 => list[0].clone(),
            _ => Script::ok(50),
        }
    }
}

#[async_trait]
impl ProcessRunner for ScriptedRunner {
    async fn run(
        &self,
        spec: ProcessSpec,
        control: ProcessControl,
    ) -> Result<ProcessOutcome, Error> {
        self.calls.lock().expect("lock").push(spec.clone());
        let done = |exit: i32, stdout: &str, stderr: &str| ProcessOutcome {
            status: ExitStatus::Code(exit),
            terminated: None,
            stdout_tail: stdout.into(),
            stderr_tail: stderr.into(),
            duration: Duration::from_millis(1),
        };
        let operation = op(&spec).to_owned();
        match operation.as_str() {
            "version" => {
                return Ok(done(
                    0,
                    "restic 0.14.0 compiled with go1.19.8 on linux/amd64\n",
                    "",
                ));
            }
            "cat" | "unlock" | "init" => return Ok(done(0, "", "")),
            "snapshots" => return Ok(done(0, "[]", "")),
            _ => {}
        }
        let url = env_of(&spec, "RESTIC_REPOSITORY")
            .unwrap_or_default()
            .to_owned();
        let script = self.next_script(&url);
        {
            let mut r = self.running.lock().expect("lock");
            r.0 += 1;
            r.1 = r.1.max(r.0);
            let e = r.2.entry(operation.clone()).or_default();
            e.0 += 1;
            e.1 = e.1.max(e.0);
        }
        if let Some(tx) = &control.events {
            for line in &script.stdout {
                let _ = tx.send(ProcessEvent::Line {
                    stream: Stream::Stdout,
                    line: line.clone(),
                });
            }
        }
        let mut stop = control.stop;
        let stopped = tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(script.millis)) => false,
            () = stop.stopped() => true,
        };
        {
            let mut r = self.running.lock().expect("lock");
            r.0 -= 1;
            if let Some(e) = r.2.get_mut(&operation) {
                e.0 -= 1;
            }
        }
        if stopped && script.finishes_when_stopped {
            return Ok(ProcessOutcome {
                terminated: Some(backup_core::Termination::Stopped),
                ..done(script.exit, &script.stdout.join("\n"), &script.stderr)
            });
        }
        if stopped {
            return Ok(ProcessOutcome {
                status: ExitStatus::Code(130),
                terminated: Some(backup_core::Termination::Stopped),
                ..done(130, "", "")
            });
        }
        Ok(done(script.exit, &script.stdout.join("\n"), &script.stderr))
    }
}

/// What most agent tests start from: a server, an agent `name` of its tenant, a scratch
/// directory with a password file, repositories at `dir/<repository>` whose restic calls follow
/// the scripts given with [`Setup::script`] (none given: each call succeeds at once), and the
/// agent's configuration. Keep it bound for the test's length (`dir` holds the state).
pub(crate) struct Setup {
    pub(crate) server: TestServer,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) pw: PathBuf,
    pub(crate) agent: TestAgent,
    pub(crate) runner: Arc<ScriptedRunner>,
    pub(crate) config: AgentConfig,
}

/// A [`Setup`] for agent `name` with `repositories`.
pub(crate) async fn setup(name: &str, repositories: &[&str]) -> Setup {
    let server = TestServer::start().await;
    let (dir, pw) = scratch();
    let agent = server.agent(name).await;
    let urls: Vec<PathBuf> = repositories.iter().map(|r| dir.path().join(r)).collect();
    let config = agent_config(
        &server,
        &agent,
        &dir.path().join("state"),
        &repositories
            .iter()
            .zip(&urls)
            .map(|(name, url)| (*name, url.as_path(), pw.as_path()))
            .collect::<Vec<_>>(),
    );
    Setup {
        server,
        dir,
        pw,
        agent,
        runner: Arc::new(ScriptedRunner::default()),
        config,
    }
}

/// A [`Setup`] for agent `name` with one repository `main` whose calls follow `scripts`.
pub(crate) async fn one_repository(name: &str, scripts: Vec<Script>) -> Setup {
    let s = setup(name, &["main"]).await;
    if !scripts.is_empty() {
        s.script("main", scripts);
    }
    s
}

impl Setup {
    /// Where `repository` lives.
    pub(crate) fn repo(&self, repository: &str) -> PathBuf {
        self.dir.path().join(repository)
    }

    /// Scripts for `repository`'s restic calls, in order, the last repeating.
    pub(crate) fn script(&self, repository: &str, scripts: Vec<Script>) {
        self.runner
            .script(&self.repo(repository).display().to_string(), scripts);
    }

    /// An hourly backup policy of the agent into `repository`.
    pub(crate) async fn backup(&self, repository: &str) -> Value {
        self.backup_of(repository, Path::new("/d")).await
    }

    /// An hourly backup policy of the agent: `data` into `repository`.
    pub(crate) async fn backup_of(&self, repository: &str, data: &Path) -> Value {
        let data = data.to_str().expect("utf8");
        self.server
            .policy(backup_policy(self.agent.id, repository, &[data]))
            .await
    }

    /// The agent, running with the scripted runner.
    pub(crate) async fn start(&self) -> RunningAgent {
        RunningAgent::start(self.config.clone(), self.runner.clone()).await
    }

    /// The agent, running real processes.
    pub(crate) async fn start_real(&self) -> RunningAgent {
        RunningAgent::start(self.config.clone(), real_runner()).await
    }

    /// The agent, running with the scripted runner and `client`.
    pub(crate) async fn start_with_client(
        &self,
        client: Arc<dyn OrchestratorClient>,
    ) -> RunningAgent {
        RunningAgent::start_with_client(self.config.clone(), self.runner.clone(), client).await
    }

    /// Waits until `n` scripted operations run at once.
    pub(crate) async fn wait_running(&self, secs: u64, what: &str, n: usize) {
        backup_testkit::wait_for(secs, what, || async { self.runner.current() == n }).await;
    }
}

/// Runs `test` on a current-thread runtime; what it logged (see [`backup_testkit::capture_logs`]).
pub(crate) fn logs_of(test: impl std::future::Future<Output = ()>) -> String {
    backup_testkit::capture_logs(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test);
    })
}

/// Runs `spec` on the real runner to its end: its outcome and every event it streamed.
pub(crate) async fn run_to_end(spec: ProcessSpec) -> (ProcessOutcome, Vec<ProcessEvent>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let control = ProcessControl {
        events: Some(tx),
        stop: StopSignal::never(),
    };
    let out = TokioProcessRunner::new()
        .run(spec, control)
        .await
        .expect("runs");
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    (out, events)
}

/// The version of the restic on `PATH`; `None` (after a notice) when there is none.
pub(crate) fn local_restic() -> Option<backup_agent::restic::ResticVersion> {
    backup_testkit::restic()?;
    let out = std::process::Command::new("restic")
        .arg("version")
        .output()
        .expect("restic version");
    backup_agent::restic::ResticVersion::parse(&String::from_utf8_lossy(&out.stdout))
}

/// A password file and a directory for an agent's state.
pub(crate) fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let pw = dir.path().join("password");
    std::fs::write(&pw, "correct horse battery staple\n").expect("password");
    (dir, pw)
}
