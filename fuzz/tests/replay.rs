//! Replays every target's checked-in corpus (`corpus/<target>/*`) on the stable toolchain: the
//! inputs that found bugs, and the seeds, stay regression tests.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_file() {
            run(&std::fs::read(&path).expect("read"));
            count += 1;
        }
    }
    assert!(count > 0, "{target} has a corpus");
}

#[test]
fn agent_config() {
    replay("agent_config", backup_fuzz::agent_config);
}

#[test]
fn state_file() {
    replay("state_file", backup_fuzz::state_file);
}

#[test]
fn restic_output() {
    replay("restic_output", backup_fuzz::restic_output);
}

#[test]
fn request_bodies() {
    replay("request_bodies", backup_fuzz::request_bodies);
}
