//! The `export` section of the collector configuration: where stored findings are copied
//! to (a JSON-lines file, a webhook or both) and in which format.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use hyper::{
    Uri,
    header::{HeaderName, HeaderValue},
};
use jiff::SignedDuration;
use nodeward_runtime::config::Validate;
use serde::Deserialize;

/// Largest `batchSize`: a page read from the store and, in batch mode, one request body.
pub const MAX_BATCH_SIZE: u32 = 1000;
/// Retrying more than this only hides a dead endpoint.
pub const MAX_RETRIES: u32 = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportConfig {
    /// The shape of each exported finding.
    #[serde(default)]
    pub format: Format,
    /// JSON lines appended to this file; `-` is standard output.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An HTTP(S) endpoint each finding (or batch) is sent to with `POST`.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Findings read from the store at a time.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Keeps the id of the last exported finding, so a restarted collector resumes
    /// after it instead of starting from "now" (delivery is then at least once).
    #[serde(default)]
    pub cursor_file: Option<PathBuf>,
}

/// How a finding is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Format {
    /// The stored record as `nodeward-collector tail --format json` prints it.
    Json,
    /// An OCSF 1.8.0 Detection or Compliance Finding.
    #[default]
    Ocsf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` (verified against the system's root certificates).
    pub url: String,
    /// Added to every request, e.g. `Authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// One request, from connecting to the end of the response, e.g. `10s`.
    #[serde(default = "default_timeout")]
    pub timeout: SignedDuration,
    /// Attempts after the first one before a finding is given up.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default)]
    pub backoff: BackoffConfig,
    /// POST each batch as one JSON array instead of one request per finding.
    #[serde(default)]
    pub batch: bool,
}

/// Delays between attempts: `initial`, doubling up to `max`, each with random jitter so
/// that collector replicas do not retry in step.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackoffConfig {
    #[serde(default = "default_initial_backoff")]
    pub initial: SignedDuration,
    #[serde(default = "default_max_backoff")]
    pub max: SignedDuration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: default_initial_backoff(),
            max: default_max_backoff(),
        }
    }
}

fn default_batch_size() -> u32 {
    100
}

fn default_timeout() -> SignedDuration {
    SignedDuration::from_secs(10)
}

fn default_max_retries() -> u32 {
    5
}

fn default_initial_backoff() -> SignedDuration {
    SignedDuration::from_millis(500)
}

fn default_max_backoff() -> SignedDuration {
    SignedDuration::from_secs(30)
}

/// A positive duration, or a message naming `key`.
pub(crate) fn positive(key: &str, value: SignedDuration) -> Result<Duration, String> {
    Duration::try_from(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{key}: must be a positive duration, got {value}"))
}

impl WebhookConfig {
    /// The parsed URL, or a message naming the key. Only the scheme and host may appear
    /// in logs: webhook paths and queries often carry a token.
    pub(crate) fn uri(&self) -> Result<Uri, String> {
        let uri: Uri = self
            .url
            .parse()
            .map_err(|e| format!("export.webhook.url: not a URL: {e}"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => Ok(uri),
            _ => Err("export.webhook.url: must be an http:// or https:// URL with a host".into()),
        }
    }

    /// The configured headers, marked sensitive so they never appear in debug output.
    pub(crate) fn header_map(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        self.headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("export.webhook.headers: invalid header name {name:?}"))?;
                let mut value = HeaderValue::from_str(value)
                    .map_err(|_| format!("export.webhook.headers.{name}: invalid header value"))?;
                value.set_sensitive(true);
                Ok((name, value))
            })
            .collect()
    }
}

impl Validate for ExportConfig {
    fn validate(&self) -> Result<(), String> {
        if self.file.is_none() && self.webhook.is_none() {
            return Err("export: set `file`, `webhook` or both".into());
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(format!(
                "export.batchSize: must be 1 to {MAX_BATCH_SIZE}, got {}",
                self.batch_size
            ));
        }
        if self.file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
            return Err("export.file: must not be empty (use - for standard output)".into());
        }
        if let Some(webhook) = &self.webhook {
            webhook.uri()?;
            webhook.header_map()?;
            positive("export.webhook.timeout", webhook.timeout)?;
            let initial = positive("export.webhook.backoff.initial", webhook.backoff.initial)?;
            let max = positive("export.webhook.backoff.max", webhook.backoff.max)?;
            if max < initial {
                return Err("export.webhook.backoff.max: must not be below backoff.initial".into());
            }
            if webhook.max_retries > MAX_RETRIES {
                return Err(format!(
                    "export.webhook.maxRetries: at most {MAX_RETRIES}, got {}",
                    webhook.max_retries
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use nodeward_runtime::config::{self, ConfigError};

    use super::*;

    fn parse(text: &str) -> Result<ExportConfig, ConfigError> {
        config::parse(Path::new("collector.yaml"), text)
    }

    #[test]
    fn defaults_and_durations() {
        let config = parse(
            "file: /var/log/nodeward/findings.jsonl\n\
             webhook:\n  url: https://siem.example/hook\n  timeout: 3s\n  backoff: {initial: 250ms, max: 1m}\n",
        )
        .unwrap();
        assert_eq!(config.format, Format::Ocsf);
        assert_eq!(config.batch_size, 100);
        let webhook = config.webhook.unwrap();
        assert_eq!(webhook.max_retries, 5);
        assert_eq!(webhook.timeout, SignedDuration::from_secs(3));
        assert_eq!(webhook.backoff.initial, SignedDuration::from_millis(250));
        assert_eq!(webhook.backoff.max, SignedDuration::from_secs(60));
        assert!(!webhook.batch);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("format: json\n", "set `file`, `webhook`"),
            ("file: x\nformat: xml\n", "format"),
            ("file: x\nbatchSize: 0\n", "batchSize"),
            ("file: x\nfiel: y\n", "fiel"),
            ("webhook: {url: ftp://x/}\n", "http://"),
            ("webhook: {url: /relative}\n", "webhook.url"),
            ("webhook: {url: 'http://x/', timeout: 0s}\n", "timeout"),
            (
                "webhook: {url: 'http://x/', backoff: {initial: 2s, max: 1s}}\n",
                "backoff.max",
            ),
            (
                "webhook: {url: 'http://x/', maxRetries: 1000}\n",
                "maxRetries",
            ),
            (
                "webhook: {url: 'http://x/', headers: {'bad name': v}}\n",
                "header name",
            ),
            ("webhook: {url: 'http://x/', retries: 3}\n", "retries"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
