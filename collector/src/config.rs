//! Collector configuration: YAML, camelCase keys, unknown keys refused, errors name the
//! file.

use std::{net::SocketAddr, path::PathBuf};

use nodeward_runtime::config::Validate;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// gRPC address for agents and SOC clients.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `sqlite:///path/to/file.db`.
    #[serde(default = "default_storage")]
    pub storage: String,
    /// Required, so that plaintext is always a written-down choice.
    pub tls: TlsMode,
}

/// Only `disabled` exists so far (local tests and demos); it is logged as a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TlsMode {
    Disabled,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7443))
}

fn default_storage() -> String {
    "sqlite:///var/lib/nodeward/collector.db".into()
}

/// Where findings are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Sqlite(PathBuf),
}

impl Config {
    /// The parsed `storage` URL.
    pub fn storage(&self) -> Result<Storage, String> {
        match self.storage.strip_prefix("sqlite://") {
            Some(path) if path.starts_with('/') => Ok(Storage::Sqlite(PathBuf::from(path))),
            Some(path) => Err(format!(
                "storage: the SQLite path must be absolute (sqlite:///var/lib/...), got {path:?}"
            )),
            None => Err(format!(
                "storage: expected a sqlite:///path URL, got {:?}",
                self.storage
            )),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.storage().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use nodeward_runtime::config::{self, ConfigError};

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        config::parse(Path::new("collector.yaml"), text)
    }

    #[test]
    fn defaults() {
        let config = parse("tls: disabled\n").unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:7443");
        assert_eq!(
            config.storage().unwrap(),
            Storage::Sqlite("/var/lib/nodeward/collector.db".into())
        );
    }

    #[test]
    fn tls_must_be_stated() {
        let err = parse("listen: 127.0.0.1:1\n").unwrap_err().to_string();
        assert!(
            err.contains("collector.yaml") && err.contains("tls"),
            "{err}"
        );
    }

    #[test]
    fn bad_storage_and_keys_are_named() {
        for (text, needle) in [
            ("tls: disabled\nstorage: mysql://x\n", "storage"),
            ("tls: disabled\nstorage: sqlite://relative.db\n", "absolute"),
            ("tls: disabled\nlisten: nowhere\n", "listen"),
            ("tls: disabled\nlistne: 127.0.0.1:1\n", "listne"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
