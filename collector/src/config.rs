//! Collector configuration: YAML, camelCase keys, unknown keys refused, errors name the
//! file.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use jiff::{SignedDuration, Span, SpanRelativeTo};
use nodeward_runtime::{
    config::Validate,
    tls::{TlsFiles, TlsMode},
};
use serde::{Deserialize, Deserializer};

use crate::{enroll::EnrollmentConfig, export::ExportConfig, redact};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// gRPC address for agents and SOC clients.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `sqlite:///path/to/file.db`, or `postgres://user:password@host:port/database`
    /// (several collector replicas may share one PostgreSQL database).
    #[serde(default = "default_storage")]
    pub storage: String,
    /// A file holding the PostgreSQL password (e.g. a mounted Secret), so the URL need
    /// not carry it. Overrides the URL's password and `PGPASSWORD` (which is used when
    /// the URL has none).
    #[serde(default)]
    pub storage_password_file: Option<PathBuf>,
    /// `mutual` (agents and SOC clients present certificates from `caFile`) or
    /// `disabled` (plaintext, tests and demos); required, so that plaintext is always a
    /// written-down choice.
    pub tls: TlsMode,
    /// CA bundle client certificates must chain to (`tls: mutual`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The collector's server certificate (`tls: mutual`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its private key (`tls: mutual`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// `/metrics`, `/healthz` and `/readyz` (plain HTTP, for Prometheus and kubelet probes).
    #[serde(default = "default_http_listen", alias = "metricsListen")]
    pub http_listen: SocketAddr,
    /// How long stored findings are kept, e.g. `30d` or `12h`. The nodes' latest posture
    /// is kept whatever its age.
    #[serde(default = "default_retention", deserialize_with = "duration")]
    pub retention: SignedDuration,
    /// A node that has not reported for this long is marked silent (`node-silent`).
    #[serde(default = "default_silence_after", deserialize_with = "duration")]
    pub silence_after: SignedDuration,
    /// Copies of every stored finding to a file and/or a webhook.
    #[serde(default)]
    pub export: Option<ExportConfig>,
    /// Agents without a certificate may get one for their node by proving, with their
    /// pod's service account token, which node they run on (off when absent).
    #[serde(default)]
    pub enrollment: Option<EnrollmentConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7443))
}

fn default_storage() -> String {
    "sqlite:///var/lib/nodeward/collector.db".into()
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9090))
}

fn default_retention() -> SignedDuration {
    SignedDuration::from_hours(30 * 24)
}

fn default_silence_after() -> SignedDuration {
    SignedDuration::from_mins(5)
}

/// A duration such as `30d`, `5m`, `1h30m` or `PT5M`. Days are taken as 24 hours: jiff's
/// `SignedDuration` refuses days because of DST, which does not matter for retention.
pub(crate) fn duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SignedDuration, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse::<Span>()
        .and_then(|span| span.to_duration(SpanRelativeTo::days_are_24_hours()))
        .map_err(|err| serde::de::Error::custom(format!("not a duration ({err}): {text:?}")))
}

/// A positive duration as `std`, or a message naming `key`.
fn positive(key: &str, value: SignedDuration) -> Result<Duration, String> {
    Duration::try_from(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{key}: must be a positive duration, got {value}"))
}

/// Where findings are kept.
#[derive(Clone, PartialEq, Eq)]
pub enum Storage {
    Sqlite(PathBuf),
    /// The whole URL, as libpq and sqlx take it (it may hold a password: never log it
    /// but through [`redact::url`]).
    Postgres(String),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&redact::url(url)).finish(),
        }
    }
}

impl Config {
    /// The parsed `storage` URL.
    pub fn storage(&self) -> Result<Storage, String> {
        if let Some(path) = self.storage.strip_prefix("sqlite://") {
            return if path.starts_with('/') {
                Ok(Storage::Sqlite(PathBuf::from(path)))
            } else {
                Err(format!(
                    "storage: the SQLite path must be absolute (sqlite:///var/lib/...), got {path:?}"
                ))
            };
        }
        // Both schemes libpq accepts; the rest of the URL is checked when connecting.
        if ["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| self.storage.starts_with(scheme))
        {
            return Ok(Storage::Postgres(self.storage.clone()));
        }
        // The value is not echoed: a mistyped PostgreSQL URL may hold a password.
        Err(
            "storage: expected a sqlite:///path or postgres://user:password@host/database URL"
                .to_owned(),
        )
    }
}

impl Config {
    /// `storage` as it may be printed: without its password.
    pub fn storage_redacted(&self) -> String {
        redact::url(&self.storage)
    }

    /// The password read from `storagePasswordFile` (without the final newline).
    pub fn storage_password(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.storage_password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("storagePasswordFile: cannot read {}: {err}", path.display()))?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
    }
}

impl Config {
    /// `retention`, validated positive.
    pub fn retention(&self) -> Duration {
        positive("retention", self.retention).unwrap_or(Duration::MAX)
    }

    /// `silenceAfter`, validated to be at least a second.
    pub fn silence_after(&self) -> Duration {
        positive("silenceAfter", self.silence_after).unwrap_or(Duration::from_mins(5))
    }
}

impl Config {
    /// The TLS files when `tls: mutual`.
    pub fn tls_files(&self) -> Result<Option<TlsFiles>, String> {
        TlsFiles::from_config(
            "",
            self.tls,
            self.ca_file.as_deref(),
            self.cert_file.as_deref(),
            self.key_file.as_deref(),
        )
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.tls_files()?;
        let storage = self.storage()?;
        if self.storage_password_file.is_some() && !matches!(storage, Storage::Postgres(_)) {
            return Err("storagePasswordFile: only a postgres:// storage takes a password".into());
        }
        positive("retention", self.retention)?;
        if positive("silenceAfter", self.silence_after)? < Duration::from_secs(1) {
            return Err(format!(
                "silenceAfter: must be at least 1s, got {}",
                self.silence_after
            ));
        }
        if let Some(export) = &self.export {
            export.validate()?;
        }
        if let Some(enrollment) = &self.enrollment {
            if self.tls != TlsMode::Mutual {
                // Tokens would travel in plaintext, and a certificate is useless without TLS.
                return Err("enrollment: needs tls: mutual".to_owned());
            }
            enrollment.validate()?;
        }
        Ok(())
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
        assert_eq!(config.http_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(config.retention(), Duration::from_hours(30 * 24));
        assert_eq!(config.silence_after(), Duration::from_mins(5));
        assert!(config.export.is_none());
    }

    #[test]
    fn durations_listen_and_export() {
        let config = parse(
            "tls: disabled\nretention: 7d\nsilenceAfter: 90s\nmetricsListen: 127.0.0.1:0\n\
             export: {file: '-', format: json}\n",
        )
        .unwrap();
        assert_eq!(config.retention(), Duration::from_hours(7 * 24));
        assert_eq!(config.silence_after(), Duration::from_secs(90));
        assert_eq!(config.http_listen.to_string(), "127.0.0.1:0");
        assert!(config.export.is_some());
        let config = parse("tls: disabled\nhttpListen: 127.0.0.1:9\nretention: 1h30m\n").unwrap();
        assert_eq!(config.http_listen.port(), 9);
        assert_eq!(config.retention(), Duration::from_mins(90));
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
    fn postgres_storage() {
        for url in [
            "postgres://nodeward:secret@db:5432/nodeward",
            "postgresql://db/nodeward",
        ] {
            let config = parse(&format!("tls: disabled\nstorage: {url}\n")).unwrap();
            assert_eq!(config.storage().unwrap(), Storage::Postgres(url.into()));
        }
        let err = parse("tls: disabled\nstorage: postgre://u:hunter2@db/x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn storage_is_shown_without_its_password() {
        let config =
            parse("tls: disabled\nstorage: postgres://nodeward:hunter2@db/nodeward\n").unwrap();
        assert_eq!(
            config.storage_redacted(),
            "postgres://nodeward:***@db/nodeward"
        );
        let debug = format!("{:?}", config.storage().unwrap());
        assert_eq!(debug, r#"Postgres("postgres://nodeward:***@db/nodeward")"#);
    }

    #[test]
    fn storage_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "hunter2\n").unwrap();
        let config = parse(&format!(
            "tls: disabled\nstorage: postgres://nodeward@db/nodeward\nstoragePasswordFile: {}\n",
            file.display()
        ))
        .unwrap();
        assert_eq!(
            config.storage_password().unwrap().as_deref(),
            Some("hunter2")
        );
        let err = parse("tls: disabled\nstoragePasswordFile: /run/secrets/pw\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("storagePasswordFile"), "{err}");
    }

    #[test]
    fn bad_storage_and_keys_are_named() {
        for (text, needle) in [
            ("tls: disabled\nstorage: mysql://x\n", "storage"),
            ("tls: disabled\nstorage: sqlite://relative.db\n", "absolute"),
            ("tls: disabled\nlisten: nowhere\n", "listen"),
            ("tls: disabled\nlistne: 127.0.0.1:1\n", "listne"),
            ("tls: disabled\nretention: forever\n", "duration"),
            ("tls: disabled\nretention: 0s\n", "retention"),
            ("tls: disabled\nsilenceAfter: 10ms\n", "silenceAfter"),
            ("tls: disabled\nsilenceAfter: -5m\n", "silenceAfter"),
            ("tls: disabled\nexport: {format: json}\n", "export"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
