//! The layered loader: YAML, then the environment, then the defaults of the target type, with
//! the origin of every value kept so that an error can say where the bad value came from.
//!
//! Numbers declared with a range are checked before the typed deserialization, so that an
//! error gives the allowed range in the API's words ("a whole number", "1-100") rather than a
//! type error about `u32`.

use std::{collections::BTreeMap, path::Path};

use backup_core::Range;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A configuration problem, for a person: key, value, range, source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// How a key's environment value is read, and what a number may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Text, taken as it is.
    Text,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    Flag,
    /// A whole number in the range.
    Number(Range),
    /// A whole number in the range, or `null` / empty / `unlimited`.
    NullableNumber(Range),
    /// A list of paths; in the environment, separated by `:` as in `PATH`.
    Paths,
}

/// A key the environment may set: its path of YAML names, its kind, and what it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The YAML names from the top (`["scheduler", "tickSeconds"]`).
    pub path: &'static [&'static str],
    /// How it is read.
    pub kind: Kind,
    /// What it is for, for the configuration reference.
    pub doc: &'static str,
}

impl Key {
    /// A key.
    pub const fn new(path: &'static [&'static str], kind: Kind) -> Self {
        Self {
            path,
            kind,
            doc: "",
        }
    }

    /// The key with what it is for.
    #[must_use]
    pub const fn doc(mut self, doc: &'static str) -> Self {
        self.doc = doc;
        self
    }

    /// `scheduler.tickSeconds`.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }
}

/// `prefix` + the path in upper snake case, segments joined by `__`
/// (`BACKUP_SERVER_` + `scheduler.tickSeconds` -> `BACKUP_SERVER_SCHEDULER__TICK_SECONDS`).
pub fn env_name(prefix: &str, path: &[&str]) -> String {
    let segments: Vec<String> = path
        .iter()
        .map(|name| {
            let mut out = String::new();
            for c in name.chars() {
                if c.is_ascii_uppercase() && !out.is_empty() {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        })
        .collect();
    format!("{prefix}{}", segments.join("__"))
}

/// A configuration type loaded by a [`Loader`]: the type gives its loader and what to check
/// once everything is merged; loading from a file, the process environment or given text is
/// the same for all.
pub trait Configuration: DeserializeOwned {
    /// The loader: the environment prefix and the keys it may set.
    fn loader() -> &'static Loader;

    /// Completes and checks what was loaded (cross-field rules, naming the source of a bad
    /// value with [`Loaded::origin`]).
    ///
    /// # Errors
    /// A [`ConfigError`].
    fn finish(loaded: Loaded<Self>) -> Result<Self, ConfigError>;

    /// Loads `file` (if any), applies the process environment, fills defaults, checks.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key, the value, the allowed range and its source.
    fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, |name| std::env::var(name).ok())
    }

    /// As [`Configuration::load`], with the environment given as a function (for tests).
    ///
    /// # Errors
    /// A [`ConfigError`].
    fn load_from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::finish(Self::loader().load(file, env)?)
    }

    /// This configuration's reference (see [`Loader::reference`]), with its defaults.
    fn reference() -> String
    where
        Self: Default + serde::Serialize,
    {
        Self::loader().reference(&serde_json::to_value(Self::default()).unwrap_or_default())
    }

    /// As [`Configuration::load_from`], with the file's text given (`source` names it).
    ///
    /// # Errors
    /// A [`ConfigError`].
    fn parse(
        text: &str,
        source: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::finish(Self::loader().parse(text, source, env)?)
    }
}

/// A loader for one binary: its environment prefix and the keys the environment may set.
#[derive(Clone, Copy, Debug)]
pub struct Loader {
    prefix: &'static str,
    keys: &'static [Key],
}

/// A loaded configuration, with where each value came from.
#[derive(Clone, Debug)]
pub struct Loaded<T> {
    /// The configuration.
    pub value: T,
    /// The merged YAML and environment, before the defaults: what was actually set.
    pub raw: Value,
    /// The file it was read from, if any.
    pub file: Option<std::path::PathBuf>,
    origins: BTreeMap<String, String>,
}

impl<T> Loaded<T> {
    /// Where the value of `key` (dotted) came from: `file <path>`, `the environment variable
    /// <NAME>`, or `defaults`. For a key inside a map (`repositories.main.passwordFile`) the
    /// closest enclosing key that was set answers.
    pub fn origin(&self, key: &str) -> String {
        let mut key = key;
        loop {
            if let Some(origin) = self.origins.get(key) {
                return origin.clone();
            }
            match key.rsplit_once('.') {
                Some((parent, _)) => key = parent,
                None => return "defaults".to_owned(),
            }
        }
    }

    /// Whether `path` was set to `null` (or to an empty / `unlimited` environment value).
    pub fn is_null(&self, path: &[&str]) -> bool {
        let mut node = &self.raw;
        for name in path {
            match node.get(name) {
                Some(next) => node = next,
                None => return false,
            }
        }
        node.is_null()
    }
}

impl Loader {
    /// A loader for environment variables named `prefix` + key.
    pub const fn new(prefix: &'static str, keys: &'static [Key]) -> Self {
        Self { prefix, keys }
    }

    /// The environment variable of a key path.
    pub fn env_name(&self, path: &[&str]) -> String {
        env_name(self.prefix, path)
    }

    /// The keys the environment may set.
    pub fn keys(&self) -> &'static [Key] {
        self.keys
    }

    /// The configuration reference of these keys as a Markdown table: key, environment
    /// variable, default (read from `defaults`, the type's `Default` as JSON), allowed values,
    /// and what the key is for.
    pub fn reference(&self, defaults: &Value) -> String {
        let mut out = String::from(
            "| key | environment | default | allowed | what |\n|---|---|---|---|---|\n",
        );
        for key in self.keys {
            let mut node = Some(defaults);
            for name in key.path {
                node = node.and_then(|n| n.get(name));
            }
            let default = match node {
                None | Some(Value::Null) => "none".to_owned(),
                // An empty list's default is computed (the key's text says how).
                Some(Value::Array(list)) if list.is_empty() => "see what".to_owned(),
                Some(Value::String(s)) => format!("`{s}`"),
                Some(other) => format!("`{other}`"),
            };
            let allowed = match key.kind {
                Kind::Text => "text".to_owned(),
                Kind::Flag => "true, false".to_owned(),
                Kind::Number(range) => range.to_string(),
                Kind::NullableNumber(range) => format!("{range}, or null (unlimited)"),
                Kind::Paths => "absolute paths (`:` between them in the environment)".to_owned(),
            };
            out.push_str(&format!(
                "| `{}` | `{}` | {default} | {allowed} | {} |\n",
                key.dotted(),
                self.env_name(key.path),
                key.doc
            ));
        }
        out
    }

    /// Loads `file` (if any), applies the environment (`env` looks a variable up), fills the
    /// defaults of `T`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key, the value, the range and the source.
    pub fn load<T: DeserializeOwned>(
        &self,
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Loaded<T>, ConfigError> {
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("reading {}: {e}", path.display())))?;
                let mut loaded = self.parse(&text, &format!("file {}", path.display()), env)?;
                loaded.file = Some(path.to_owned());
                Ok(loaded)
            }
            None => self.parse("", "defaults", env),
        }
    }

    /// As [`Loader::load`], with the file's text given (`source` names it in errors).
    ///
    /// # Errors
    /// A [`ConfigError`].
    pub fn parse<T: DeserializeOwned>(
        &self,
        text: &str,
        source: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Loaded<T>, ConfigError> {
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_norway::from_str(text)
                .map_err(|e| ConfigError(format!("{source}: not valid YAML: {e}")))?
        };
        let mut root = match value {
            Value::Null => Map::new(),
            Value::Object(map) => map,
            _ => {
                return Err(ConfigError(format!(
                    "{source}: expected a mapping of keys to values"
                )));
            }
        };
        let mut origins = BTreeMap::new();
        record_origins(&root, "", source, &mut origins);
        for key in self.keys {
            let name = self.env_name(key.path);
            let Some(raw) = env(&name) else { continue };
            let value = from_env(key, &name, &raw)?;
            set_path(&mut root, key.path, value)
                .map_err(|what| ConfigError(format!("{name}: {what} in {source}")))?;
            origins.insert(key.dotted(), format!("the environment variable {name}"));
        }
        let loaded = Loaded {
            value: (),
            raw: Value::Object(root),
            file: None,
            origins,
        };
        for key in self.keys {
            check_range(key, &loaded)?;
        }
        let value = serde_path_to_error::deserialize(loaded.raw.clone()).map_err(|e| {
            let path = e.path().to_string();
            ConfigError(format!(
                "{path}: {} (from {})",
                backup_core::in_api_words(&e.into_inner().to_string()),
                loaded.origin(&path)
            ))
        })?;
        Ok(Loaded {
            value,
            raw: loaded.raw,
            file: None,
            origins: loaded.origins,
        })
    }
}

/// Every mapping key of the file, dotted, as coming from `source`.
fn record_origins(
    map: &Map<String, Value>,
    prefix: &str,
    source: &str,
    into: &mut BTreeMap<String, String>,
) {
    for (name, value) in map {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let Value::Object(inner) = value {
            record_origins(inner, &path, source, into);
        }
        into.insert(path, source.to_owned());
    }
}

fn from_env(key: &Key, name: &str, raw: &str) -> Result<Value, ConfigError> {
    let dotted = key.dotted();
    let not_number = |range: Range, or: &str| {
        ConfigError(format!(
            "{dotted}: {raw:?} is not a whole number; allowed {range}{or} (from the environment variable {name})"
        ))
    };
    Ok(match key.kind {
        Kind::Text => Value::String(raw.to_owned()),
        Kind::Flag => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" => Value::Bool(false),
            _ => {
                return Err(ConfigError(format!(
                    "{dotted}: {raw:?} is not true or false (from the environment variable {name})"
                )));
            }
        },
        Kind::Number(range) => Value::from(
            raw.trim()
                .parse::<i64>()
                .map_err(|_| not_number(range, ""))?,
        ),
        Kind::NullableNumber(range) => match raw.trim() {
            "" | "null" | "unlimited" => Value::Null,
            n => Value::from(
                n.parse::<i64>()
                    .map_err(|_| not_number(range, ", or unlimited"))?,
            ),
        },
        Kind::Paths => Value::Array(
            raw.split(':')
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_owned()))
                .collect(),
        ),
    })
}

/// A declared number must be whole and in its range; `null` is left to the type.
fn check_range<T>(key: &Key, loaded: &Loaded<T>) -> Result<(), ConfigError> {
    let (Kind::Number(range) | Kind::NullableNumber(range)) = key.kind else {
        return Ok(());
    };
    let mut node = &loaded.raw;
    for name in key.path {
        match node.get(name) {
            Some(next) => node = next,
            None => return Ok(()),
        }
    }
    let dotted = key.dotted();
    let from = loaded.origin(&dotted);
    match node {
        Value::Null => Ok(()),
        Value::Number(n) => match n.as_i64() {
            None => Err(ConfigError(format!(
                "{dotted}: {n} is not a whole number; allowed {range} (from {from})"
            ))),
            Some(v) if !(range.min..=range.max).contains(&v) => Err(ConfigError(format!(
                "{dotted}: {n} is out of range; allowed {range} (from {from})"
            ))),
            Some(_) => Ok(()),
        },
        other => Err(ConfigError(format!(
            "{dotted}: {other} is not a number; allowed {range} (from {from})"
        ))),
    }
}

fn set_path(root: &mut Map<String, Value>, path: &[&str], leaf: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut node = root;
    for name in parents {
        let entry = node
            .entry((*name).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        node = match entry {
            Value::Object(map) => map,
            _ => return Err(format!("{name} is not a mapping")),
        };
    }
    node.insert((*last).to_owned(), leaf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", default, deny_unknown_fields)]
    struct Nested {
        tick_seconds: u32,
        enabled: bool,
    }

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", default, deny_unknown_fields)]
    struct Top {
        name: String,
        scheduler: Nested,
        limit: Option<i64>,
    }

    const KEYS: &[Key] = &[
        Key::new(&["name"], Kind::Text),
        Key::new(
            &["scheduler", "tickSeconds"],
            Kind::Number(Range { min: 1, max: 60 }),
        ),
        Key::new(&["scheduler", "enabled"], Kind::Flag),
        Key::new(&["limit"], Kind::NullableNumber(Range { min: 1, max: 9 })),
    ];
    const LOADER: Loader = Loader::new("T_", KEYS);

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn file_then_environment_then_defaults_with_origins() {
        let loaded: Loaded<Top> = LOADER
            .parse(
                "name: a\nscheduler:\n  tickSeconds: 5\n",
                "file t.yaml",
                env(&[("T_SCHEDULER__ENABLED", "yes"), ("T_LIMIT", "unlimited")]),
            )
            .expect("loads");
        assert_eq!(
            loaded.value,
            Top {
                name: "a".into(),
                scheduler: Nested {
                    tick_seconds: 5,
                    enabled: true
                },
                limit: None
            }
        );
        assert_eq!(loaded.origin("scheduler.tickSeconds"), "file t.yaml");
        assert_eq!(
            loaded.origin("scheduler.enabled"),
            "the environment variable T_SCHEDULER__ENABLED"
        );
        assert!(loaded.is_null(&["limit"]));
        assert_eq!(loaded.origin("other"), "defaults");
    }

    #[test]
    fn errors_name_key_value_range_and_source() {
        type Vars = &'static [(&'static str, &'static str)];
        let cases: [(&str, Vars, &str); 6] = [
            (
                "scheduler:\n  tickSeconds: 0\n",
                &[],
                "scheduler.tickSeconds: 0 is out of range; allowed 1-60 (from file t.yaml)",
            ),
            (
                "scheduler:\n  tickSeconds: 1.5\n",
                &[],
                "scheduler.tickSeconds: 1.5 is not a whole number; allowed 1-60 (from file t.yaml)",
            ),
            (
                "",
                &[("T_SCHEDULER__TICK_SECONDS", "soon")],
                "scheduler.tickSeconds: \"soon\" is not a whole number; allowed 1-60 (from the environment variable T_SCHEDULER__TICK_SECONDS)",
            ),
            (
                "",
                &[("T_SCHEDULER__ENABLED", "maybe")],
                "scheduler.enabled: \"maybe\" is not true or false (from the environment variable T_SCHEDULER__ENABLED)",
            ),
            (
                "",
                &[("T_LIMIT", "x")],
                "limit: \"x\" is not a whole number; allowed 1-9, or unlimited (from the environment variable T_LIMIT)",
            ),
            (
                "- a list\n",
                &[],
                "file t.yaml: expected a mapping of keys to values",
            ),
        ];
        for (text, vars, want) in cases {
            let e = LOADER
                .parse::<Top>(text, "file t.yaml", env(vars))
                .expect_err(want)
                .to_string();
            assert_eq!(e, want);
        }
        let e = LOADER
            .parse::<Top>("scheduler:\n  tickSecond: 5\n", "file t.yaml", env(&[]))
            .expect_err("typo")
            .to_string();
        assert!(
            e.starts_with("scheduler.tickSecond: unknown field")
                && e.ends_with("(from file t.yaml)"),
            "{e}"
        );
    }

    #[test]
    fn environment_names_follow_the_rule() {
        assert_eq!(
            env_name("BACKUP_SERVER_", &["scheduler", "tickSeconds"]),
            "BACKUP_SERVER_SCHEDULER__TICK_SECONDS"
        );
        assert_eq!(
            env_name("BACKUP_AGENT_", &["maxConcurrentTasks"]),
            "BACKUP_AGENT_MAX_CONCURRENT_TASKS"
        );
    }
}
