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
