//! Processes under test and what the tests look at: the API, restic's repositories, the
//! process table.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use backup_testkit::{Client, Http, TenantApi, TestAgent, TestDatabase};
use serde_json::{Value, json};

pub(crate) const ADMIN: &str = "e2e-admin-token-0123456789abcdef";

/// Which database the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
}

/// A workspace binary next to this test's executable (target/<profile>/).
pub(crate) fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo test --workspace` (or build -p backup-server -p backup-agent first)",
        path.display()
    );
    path
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn terminate(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// What every test needs: a temp dir, restic, and a database URL for the server.
pub(crate) struct World {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) database: String,
    _db: Option<TestDatabase>,
}

impl World {
    /// `None` (after a printed notice) when restic, or PostgreSQL for `Db::Postgres`, is absent.
    pub(crate) async fn new(db: Db) -> Option<World> {
        backup_testkit::restic()?;
        let dir = tempfile::tempdir().expect("dir");
        let (database, handle) = match db {
            Db::Sqlite => (
                format!("sqlite://{}", dir.path().join("server.db").display()),
                None,
            ),
            Db::Postgres => {
                let db = TestDatabase::create().await?;
                (db.url.clone(), Some(db))
            }
        };
        Some(World {
            dir,
            database,
            _db: handle,
        })
    }

    /// On the database at `url` (one the caller owns); `None` without restic.
    pub(crate) fn on(url: String) -> Option<World> {
        backup_testkit::restic()?;
        Some(World {
            dir: tempfile::tempdir().expect("dir"),
            database: url,
            _db: None,
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A password file and an initialized repository.
    pub(crate) fn repository(&self, name: &str) -> (PathBuf, PathBuf) {
        let repo = self.path(name);
        let password = self.init_repository(&repo, name);
        (repo, password)
    }

    /// `restic init` of `repo` (a path or a URL) with a new password file: that file.
    pub(crate) fn init_repository(&self, repo: &Path, name: &str) -> PathBuf {
        let password = self.path(&format!("{name}.password"));
        std::fs::write(&password, format!("password of {name}\n")).expect("password");
        let out = restic(repo, &password, &self.path("cache"))
            .arg("init")
            .output()
            .expect("restic init");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        password
    }

    /// A directory of `files` files of `size` pseudo-random bytes.
    pub(crate) fn data(&self, name: &str, files: usize, size: usize) -> PathBuf {
        backup_testkit::random_tree(self.dir.path(), name, files, size)
    }

    /// What this test's restic processes have in their repository path: its directory.
    pub(crate) fn marker(&self) -> String {
        self.dir.path().display().to_string()
    }
}

pub(crate) use backup_testkit::{restic_command as restic, snapshots, wait_for};

/// A `backup-server` process.
pub(crate) struct ServerProc {
    pub(crate) url: String,
    port: u16,
    database: String,
    log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl ServerProc {
    pub(crate) fn start(world: &World, name: &str) -> ServerProc {
        Self::start_with_env(world, name, &[])
    }

    /// With extra environment variables (`RUST_LOG`, `BACKUP_SERVER_*`).
    pub(crate) fn start_with_env(world: &World, name: &str, env: &[(&str, &str)]) -> ServerProc {
        let mut s = ServerProc {
            url: String::new(),
            port: free_port(),
            database: world.database.clone(),
            log: world.path(&format!("{name}.log")),
            env: owned(env),
            child: None,
        };
        s.url = format!("http://127.0.0.1:{}", s.port);
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut command = Command::new(bin("backup-server"));
        command
            .env("BACKUP_SERVER_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("BACKUP_SERVER_DATABASE", &self.database)
            .env("BACKUP_SERVER_ADMIN_TOKEN", ADMIN)
            .env("BACKUP_SERVER_SCHEDULER__TICK_SECONDS", "1")
            .env("BACKUP_SERVER_SCHEDULER__LEASE_SECONDS", "20")
            .env("BACKUP_SERVER_SCHEDULER__OFFLINE_AFTER_SECONDS", "30")
            .env("BACKUP_SERVER_LIMITS__AGENT_REQUESTS_PER_SECOND", "0");
        self.child = Some(spawn_logged(command, &self.env, &self.log));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9.
    pub(crate) fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    /// Its port on loopback.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Its process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts it again on the same port and database.
    pub(crate) fn restart(&mut self) {
        self.spawn();
    }

    /// What it wrote to stderr (its logs), over every start.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }
}

/// Starts `command` with `env` added, its stderr (the logs) appended to `log`.
fn spawn_logged(mut command: Command, env: &[(String, String)], log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("a workspace binary")
}

/// kill -9 and reap.
fn kill9(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        c.kill().expect("kill -9");
        let _ = c.wait();
    }
}

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }
}

/// The API as a tenant.
pub(crate) type Api = TenantApi<Http>;

impl ServerProc {
    /// A client of this server.
    pub(crate) fn client(&self) -> Client<Http> {
        Client::new(Http::new(&self.url))
    }

    /// A new tenant `e2e` (made with the admin token) and the API as it.
    pub(crate) async fn tenant_api(&self) -> Api {
        let client = self.client();
        let tenant = client.create_tenant(ADMIN, "e2e").await;
        Api::new(client, tenant)
    }
}

/// What most tests start from: a server, the API as a tenant, an initialized repository (the
/// agent's `main`), a directory of data, and an agent of the tenant running with `extra`
/// appended to its YAML.
pub(crate) struct OneAgent {
    pub(crate) server: ServerProc,
    pub(crate) api: Api,
    pub(crate) repo: PathBuf,
    pub(crate) pw: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) agent: TestAgent,
    pub(crate) process: AgentProc,
}

/// A [`OneAgent`]: agent `name`, data of `files` files of `size` bytes.
pub(crate) async fn one_agent(
    world: &World,
    name: &str,
    (files, size): (usize, usize),
    extra: &str,
) -> OneAgent {
    let server = ServerProc::start(world, "server");
    let api = server.tenant_api().await;
    let (repo, pw) = world.repository("repo");
    let data = world.data("data", files, size);
    let agent = api.agent(name).await;
    let process = agent_yaml(
        world,
        "agent",
        &server.url,
        &agent,
        &[("main", &repo, &pw)],
        extra,
    )
    .start(world);
    OneAgent {
        server,
        api,
        repo,
        pw,
        data,
        agent,
        process,
    }
}

impl OneAgent {
    /// A backup policy `name` of the agent: the data into `main`, every `every`.
    pub(crate) async fn backup_every(&self, name: &str, every: &str) -> Value {
        self.api
            .post(
                "/policies",
                backup_every(name, &self.agent, every, &self.data, "main"),
            )
            .await
    }

    /// The repository's snapshots.
    pub(crate) fn snapshots(&self, world: &World) -> Vec<Value> {
        snapshots(&self.repo, &self.pw, &world.path("cache"))
    }

    /// The agent's settings patched with `patch`.
    pub(crate) async fn patch_settings(&self, patch: Value) {
        let path = format!("/agents/{}/settings", self.agent.id);
        let (status, body) = self.api.call("PATCH", &path, Some(patch)).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// A backup policy body: `data` into `repository` every `every`.
pub(crate) fn backup_every(
    name: &str,
    agent: &TestAgent,
    every: &str,
    data: &Path,
    repository: &str,
) -> Value {
    json!({"name": name, "agentId": agent.id, "kind": "backup", "schedule": {"every": every}, "paths": [data], "repository": repository})
}

/// A `backup-agent` process with its YAML configuration.
pub(crate) struct AgentProc {
    config: PathBuf,
    log: PathBuf,
    pub(crate) state_dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

/// An agent's configuration before its process starts: its name (which names its files) and
/// its YAML.
pub(crate) struct AgentYaml {
    name: String,
    pub(crate) yaml: String,
}

/// An agent `name`'s YAML: fast intervals, `extra` (settings proposals) and the repositories
/// (name, url, password), the last one at the end so that keys can be appended to it.
pub(crate) fn agent_yaml(
    world: &World,
    name: &str,
    server_url: &str,
    agent: &TestAgent,
    repositories: &[(&str, &Path, &Path)],
    extra: &str,
) -> AgentYaml {
    let state_dir = world.path(&format!("{name}-state"));
    let mut yaml = format!(
        "orchestratorUrl: {server_url}\npollingIntervalSeconds: 1\nheartbeatIntervalSeconds: 1\nagentId: {}\ntoken: {}\nstateDir: {}\nstopGraceSeconds: 2\nbackoffBaseSeconds: 1\n{extra}repositories:\n",
        agent.id,
        agent.token,
        state_dir.display()
    );
    for (repo, url, password) in repositories {
        yaml.push_str(&format!(
            "  {repo}:\n    url: {}\n    passwordFile: {}\n",
            url.display(),
            password.display()
        ));
    }
    AgentYaml {
        name: name.to_owned(),
        yaml,
    }
}

impl AgentYaml {
    /// An agent `name` with `yaml` as it is.
    pub(crate) fn new(name: &str, yaml: String) -> AgentYaml {
        AgentYaml {
            name: name.to_owned(),
            yaml,
        }
    }

    /// The same YAML under another name (its process gets its own config and log files).
    pub(crate) fn renamed(&self, name: &str) -> AgentYaml {
        AgentYaml {
            name: name.to_owned(),
            yaml: self.yaml.clone(),
        }
    }

    /// The agent's process on this configuration.
    pub(crate) fn start(&self, world: &World) -> AgentProc {
        self.start_with_env(world, &[])
    }

    /// The agent's process on this configuration, with extra environment variables.
    pub(crate) fn start_with_env(&self, world: &World, env: &[(&str, &str)]) -> AgentProc {
        let name = &self.name;
        let config = world.path(&format!("{name}.yaml"));
        std::fs::write(&config, &self.yaml).expect("agent config");
        let mut a = AgentProc {
            config,
            log: world.path(&format!("{name}.log")),
            state_dir: world.path(&format!("{name}-state")),
            env: owned(env),
            child: None,
        };
        a.spawn();
        a
    }
}

impl AgentProc {
    fn spawn(&mut self) {
        let mut command = Command::new(bin("backup-agent"));
        command.arg("--config").arg(&self.config);
        self.child = Some(spawn_logged(command, &self.env, &self.log));
    }

    pub(crate) fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    pub(crate) fn restart(&mut self) {
        self.spawn();
    }

    /// SIGTERM and wait; true when it exited cleanly.
    pub(crate) fn stop(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => {
                terminate(&mut c);
                c.try_wait().ok().flatten().is_some_and(|s| s.success())
            }
            None => true,
        }
    }

    /// How it exited, if it does within `secs`.
    pub(crate) fn exit_within(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut()?.try_wait().ok().flatten() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Its process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The agent's diagnostics.json.
    pub(crate) fn diagnostics(&self) -> Value {
        std::fs::read(self.state_dir.join("diagnostics.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }
}

/// A restic process seen in the process table.
#[derive(Debug, Clone)]
pub(crate) struct ResticProc {
    pub(crate) pid: u32,
    pub(crate) operation: String,
    pub(crate) repository: String,
    pub(crate) nice: i32,
}

/// Every live restic process: its pid and arguments (from `/proc`).
pub(crate) fn restic_pids() -> Vec<(u32, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.first()
                .is_some_and(|a| a == "restic" || a.ends_with("/restic"))
                .then_some((pid, args))
        })
        .collect()
}

/// A process's environment (`/proc/<pid>/environ`), while it runs.
pub(crate) fn environment(pid: u32) -> Option<std::collections::BTreeMap<String, String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter_map(|e| {
                let e = String::from_utf8_lossy(e);
                let (k, v) = e.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect(),
    )
}

/// restic processes whose repository path contains `marker` (this test's directory).
pub(crate) fn restic_processes(marker: &str) -> Vec<ResticProc> {
    let mut found = Vec::new();
    for (pid, args) in restic_pids() {
        let Some(mut env) = environment(pid) else {
            continue;
        };
        let repository = env.remove("RESTIC_REPOSITORY").unwrap_or_default();
        if !repository.contains(marker) {
            continue;
        }
        let nice = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s[s.rfind(')')? + 1..]
                    .split_whitespace()
                    .nth(16)
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0);
        found.push(ResticProc {
            pid,
            operation: args.get(1).cloned().unwrap_or_default(),
            repository,
            nice,
        });
    }
    found
}

/// The operations that count as work (not `version`, `cat`, `unlock`, `init`).
pub(crate) fn working(procs: &[ResticProc]) -> Vec<ResticProc> {
    procs
        .iter()
        .filter(|p| matches!(p.operation.as_str(), "backup" | "check" | "forget"))
        .cloned()
        .collect()
}

/// Runs a test body on SQLite and on PostgreSQL.
macro_rules! e2e_test {
    ($name:ident, |$world:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run(db: $crate::harness::Db) {
                let Some($world) = $crate::harness::World::new(db).await else {
                    return;
                };
                $body.await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::harness::Db::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::harness::Db::Postgres).await
            }
        }
    };
}
pub(crate) use e2e_test;
