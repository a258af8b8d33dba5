//! `enrollment:` in the collector's config: the CA it signs agents' certificates with,
//! whose tokens it accepts, and for how long a certificate is valid. Absent: no agent can
//! enroll (the default; certificates are then installed on the nodes).

use std::{path::PathBuf, time::Duration};

use jiff::SignedDuration;
use serde::Deserialize;

/// Shortest `ttl`: the agent renews a third before expiry, so shorter would mean a renewal
/// every few minutes per node.
const MIN_TTL: Duration = Duration::from_mins(10);
/// Longest `ttl`: enrollment exists to keep certificates short-lived.
const MAX_TTL: Duration = Duration::from_hours(30 * 24);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// The CA certificate agents' certificates are signed with (PEM; a chain may follow it,
    /// and is sent to agents with their certificate). It must chain to the `caFile`
    /// the collector trusts client certificates from; a dedicated intermediate is best.
    pub ca_cert_file: PathBuf,
    /// Its private key (PEM). Read at every issuance, so a rotated CA needs no restart.
    pub ca_key_file: PathBuf,
    /// `namespace/name` of the agents' service account: only its tokens are accepted.
    #[serde(default = "default_service_account")]
    pub service_account: String,
    /// The audience agents' projected tokens are issued for; a token for the API server
    /// or anything else is refused.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// How long an issued certificate is valid, e.g. `24h`.
    #[serde(default = "default_ttl", deserialize_with = "crate::config::duration")]
    pub ttl: SignedDuration,
    /// A kubeconfig to reach the API server with, instead of the collector pod's service
    /// account (outside a cluster: development and tests).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
}

fn default_service_account() -> String {
    "nodeward/nodeward-agent".to_owned()
}

fn default_audience() -> String {
    "nodeward-collector".to_owned()
}

fn default_ttl() -> SignedDuration {
    SignedDuration::from_hours(24)
}

impl EnrollmentConfig {
    /// The agents' service account as `(namespace, name)`.
    pub fn service_account(&self) -> Result<(&str, &str), String> {
        self.service_account
            .split_once('/')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
            .ok_or_else(|| {
                format!(
                    "enrollment.serviceAccount: expected namespace/name, got {:?}",
                    self.service_account
                )
            })
    }

    /// `ttl`, validated.
    pub fn ttl(&self) -> Duration {
        Duration::try_from(self.ttl).unwrap_or(default_ttl().unsigned_abs())
    }

    pub fn validate(&self) -> Result<(), String> {
        self.service_account()?;
        if self.audience.is_empty() {
            return Err("enrollment.audience: must not be empty".to_owned());
        }
        let ttl = Duration::try_from(self.ttl).unwrap_or(Duration::ZERO);
        if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
            return Err(format!(
                "enrollment.ttl: between {:#} and {:#}, got {:#}",
                SignedDuration::try_from(MIN_TTL).unwrap_or_default(),
                SignedDuration::try_from(MAX_TTL).unwrap_or_default(),
                self.ttl
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use nodeward_runtime::config;

    use crate::config::Config;

    fn parse(enrollment: &str) -> Result<Config, String> {
        let text = format!(
            "tls: mutual\ncaFile: /ca.crt\ncertFile: /c.crt\nkeyFile: /c.key\nenrollment: {enrollment}\n"
        );
        config::parse::<Config>(Path::new("collector.yaml"), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_limits() {
        let config = parse("{caCertFile: /e/ca.crt, caKeyFile: /e/ca.key}").unwrap();
        let enrollment = config.enrollment.unwrap();
        assert_eq!(
            enrollment.service_account().unwrap(),
            ("nodeward", "nodeward-agent")
        );
        assert_eq!(enrollment.audience, "nodeward-collector");
        assert_eq!(enrollment.ttl(), Duration::from_hours(24));
        for (yaml, needle) in [
            ("{caCertFile: /a, caKeyFile: /b, ttl: 1m}", "enrollment.ttl"),
            (
                "{caCertFile: /a, caKeyFile: /b, ttl: 90d}",
                "enrollment.ttl",
            ),
            (
                "{caCertFile: /a, caKeyFile: /b, serviceAccount: agent}",
                "namespace/name",
            ),
            ("{caCertFile: /a}", "caKeyFile"),
            (
                "{caCertFile: /a, caKeyFile: /b, tokenFile: /c}",
                "tokenFile",
            ),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }

    #[test]
    fn enrollment_needs_mutual_tls() {
        let err = config::parse::<Config>(
            Path::new("collector.yaml"),
            "tls: disabled\nenrollment: {caCertFile: /a, caKeyFile: /b}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("enrollment") && err.contains("mutual"),
            "{err}"
        );
    }

    use std::time::Duration;
}
