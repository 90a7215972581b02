//! # backup-config: what both binaries share to start
//!
//! One configuration loader for `backup-server` and `backup-agent` (and for embedders who want
//! the same rules): a YAML file, then environment variables, then defaults, where every error
//! names the key, the value, the allowed range and where the value came from. Environment names
//! are a prefix plus the key path in upper snake case, nested keys joined by `__`
//! (`scheduler.tickSeconds` -> `BACKUP_SERVER_SCHEDULER__TICK_SECONDS`).
//!
//! ```
//! use backup_config::{Key, Kind, Loader};
//! use backup_core::Range;
//!
//! #[derive(serde::Deserialize, Default)]
//! #[serde(rename_all = "camelCase", default)]
//! struct Config { listen: String, tick_seconds: u32 }
//!
//! const KEYS: &[Key] = &[
//!     Key::new(&["listen"], Kind::Text),
//!     Key::new(&["tickSeconds"], Kind::Number(Range { min: 1, max: 3600 })),
//! ];
//! let loader = Loader::new("EXAMPLE_", KEYS);
//! let env = |name: &str| (name == "EXAMPLE_TICK_SECONDS").then(|| "5".to_owned());
//! let loaded = loader.parse::<Config>("listen: 127.0.0.1:8080\n", "file example.yaml", env)?;
//! assert_eq!((loaded.value.listen.as_str(), loaded.value.tick_seconds), ("127.0.0.1:8080", 5));
//! assert_eq!(loaded.origin("tickSeconds"), "the environment variable EXAMPLE_TICK_SECONDS");
//!
//! let e = loader.parse::<Config>("tickSeconds: 0\n", "file example.yaml", |_| None).err().unwrap();
//! assert_eq!(e.to_string(), "tickSeconds: 0 is out of range; allowed 1-3600 (from file example.yaml)");
//! # Ok::<(), backup_config::ConfigError>(())
//! ```
#![deny(missing_docs)]

mod layers;
mod startup;

pub use layers::{ConfigError, Configuration, Key, Kind, Loaded, Loader, env_name};
pub use startup::{init_tracing, shutdown_signal};
