//! The demo's restore scene: once the first snapshot is listed, a file of the sample is
//! "lost", the snapshot is browsed one directory (an `ls` task) and the lost directory is
//! restored through the API (a `restore` task) into the agent's default restore target; the
//! demo checks the file came back as it was.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::Api;

/// What the scene needs: the agent, the sample directory, where the agent may restore.
pub(crate) struct Scene {
    pub(crate) agent_id: String,
    pub(crate) data: PathBuf,
    pub(crate) restores: PathBuf,
}

/// Waits for a task to end (30 s at most); its view then.
async fn ended(api: &Api, task: &Value) -> Result<Value> {
    let path = format!("/tasks/{}", task["id"].as_str().context("task id")?);
    let started = Instant::now();
    loop {
        let view = api.call(reqwest::Method::GET, &path, None).await?;
        let status = view["status"].as_str().unwrap_or_default();
        if !matches!(status, "pending" | "claimed" | "running") {
            return Ok(view);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("task {path} still {status} after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Scene {
    /// Plays the scene if a snapshot of the sample exists; whether it played.
    pub(crate) async fn play(&self, api: &Api) -> Result<bool> {
        let snapshots = api.items("/snapshots?repository=local").await?;
        let Some(snapshot) = snapshots.last() else {
            return Ok(false);
        };
        let id = snapshot["shortId"].as_str().context("short id")?;
        let lost = self.data.join("documents/plan.md");
        let before = std::fs::read(&lost)?;
        std::fs::remove_file(&lost)?;
        println!(
            "\n--- restore: {} is gone; snapshot {id} has it",
            lost.display()
        );

        let ls = api
            .call(
                reqwest::Method::POST,
                &format!("/snapshots/{id}/ls"),
                Some(json!({"agentId": self.agent_id, "repository": "local", "path": self.data})),
            )
            .await?;
        let listed = ended(api, &ls).await?;
        let names: Vec<String> = listed["entries"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        let path = e["path"].as_str().unwrap_or_default();
                        let name = Path::new(path)
                            .file_name()
                            .map_or(path.into(), |n| n.to_string_lossy().into_owned());
                        if e["type"] == "dir" {
                            format!("{name}/")
                        } else {
                            name
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "--- browse (an ls task, {}): {} holds {}",
            listed["status"].as_str().unwrap_or("?"),
            self.data.display(),
            names.join(", ")
        );

        let target = self.restores.join(format!("snapshot-{id}"));
        let documents = self.data.join("documents");
        let restore = api
            .call(
                reqwest::Method::POST,
                "/restores",
                Some(json!({
                    "agentId": self.agent_id, "repository": "local", "snapshotId": id,
                    "include": [documents], "target": target,
                })),
            )
            .await?;
        let done = ended(api, &restore).await?;
        let restored = target.join(lost.strip_prefix("/").unwrap_or(&lost));
        let same = std::fs::read(&restored).is_ok_and(|bytes| bytes == before);
        println!(
            "--- restore task {}: {} ({} files and directories, {} bytes) into {}; plan.md {}",
            done["id"].as_str().unwrap_or("?"),
            done["status"].as_str().unwrap_or("?"),
            done["filesRestored"],
            done["bytesRestored"],
            target.display(),
            if same {
                "is back, byte for byte"
            } else {
                "did NOT come back"
            }
        );
        // Put it back where it was, so the next backups carry it again.
        if same {
            std::fs::copy(&restored, &lost)?;
        }
        Ok(true)
    }
}
