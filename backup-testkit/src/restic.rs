//! restic and its repositories as the tests see them from outside the agent: a command with a
//! repository's environment, its snapshots, and pseudo-random data to back up.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

/// restic on a repository, for setting up and checking from outside the agent.
pub fn restic_command(repo: &Path, password: &Path, cache: &Path) -> Command {
    let mut c = Command::new("restic");
    c.env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD_FILE", password)
        .env("RESTIC_CACHE_DIR", cache);
    c
}

/// `restic snapshots --json` of a repository (without taking its lock).
///
/// # Panics
/// When restic fails.
pub fn snapshots(repo: &Path, password: &Path, cache: &Path) -> Vec<Value> {
    let out = restic_command(repo, password, cache)
        .args(["snapshots", "--json", "--no-lock"])
        .output()
        .expect("restic snapshots");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("snapshots json")
}

/// `len` pseudo-random bytes from `seed` (xorshift: incompressible, the same every run).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed;
    let mut bytes = vec![0u8; len];
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    bytes
}

/// A directory `dir/name` of `files` files of `size` pseudo-random bytes each.
///
/// # Panics
/// When the files cannot be written.
pub fn random_tree(dir: &Path, name: &str, files: usize, size: usize) -> PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).expect("data dir");
    for f in 0..files {
        let seed = (name.len() as u64) << 32 | f as u64;
        std::fs::write(
            root.join(format!("file-{f}.bin")),
            pseudo_random(seed, size),
        )
        .expect("file");
    }
    root
}

/// The nodes `restic ls --json <snapshot> [dir]` prints (without its snapshot line): the whole
/// tree without `dir`, `dir` and the entries one level below it with one.
///
/// # Panics
/// When restic fails.
pub fn ls_nodes(
    repo: &Path,
    password: &Path,
    cache: &Path,
    snapshot: &str,
    dir: Option<&str>,
) -> Vec<Value> {
    let out = restic_command(repo, password, cache)
        .args(["ls", "--json", "--no-lock", snapshot])
        .args(dir)
        .output()
        .expect("restic ls");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["struct_type"] == "node")
        .collect()
}

/// The entries one level below `dir` in a snapshot, as `restic ls` lists them.
///
/// # Panics
/// When restic fails.
pub fn ls(repo: &Path, password: &Path, cache: &Path, snapshot: &str, dir: &str) -> Vec<Value> {
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    ls_nodes(repo, password, cache, snapshot, Some(dir))
        .into_iter()
        .filter(|v| {
            v["path"]
                .as_str()
                .and_then(|p| p.strip_prefix(&prefix))
                .is_some_and(|name| !name.is_empty() && !name.contains('/'))
        })
        .collect()
}

/// Every file under `root` (symbolic links as their target's text), by path relative to
/// `root`, with the SHA-256 of its bytes: two trees are equal byte for byte when their digests
/// are.
///
/// # Panics
/// When a file cannot be read.
pub fn tree_digest(root: &Path) -> std::collections::BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    let mut digests = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        let relative = path
            .strip_prefix(root)
            .expect("under root")
            .display()
            .to_string();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
            continue;
        }
        let bytes = if meta.file_type().is_symlink() {
            std::fs::read_link(&path)
                .expect("link")
                .display()
                .to_string()
                .into_bytes()
        } else {
            std::fs::read(&path).expect("read")
        };
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        digests.insert(relative, digest);
    }
    digests
}
