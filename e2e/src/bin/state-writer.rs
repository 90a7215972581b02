//! Helper of the crash-consistency test (`tests/e2e/crash_state.rs`): writes state number N
//! into the state file of DIR with the agent's own `StateFile::save`, after printing `ready`.
//! The test SIGKILLs it at a random moment of that write.

use std::io::Write;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        let _ = writeln!(std::io::stderr(), "usage: state-writer DIR N");
        return std::process::ExitCode::from(2);
    };
    let state = backup_e2e::crash_state(n);
    let file = match backup_agent::state::StateFile::new(std::path::Path::new(dir)) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    match file.save(&state) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
