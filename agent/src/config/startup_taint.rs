//! The `startupTaint` section: which taint the agent lifts from its Node once IMDS
//! enforcement is attached.

use serde::Deserialize;

/// The taint nodes register with so that no ordinary pod is scheduled before the agent
/// enforces; see `docs/install.md` for registering nodes with it.
pub const DEFAULT_STARTUP_TAINT: &str = "nodeward.io/agent-not-ready";

/// Nodes registered with a startup taint get it removed by their agent once enforcement
/// is in place (only with a Kubernetes client: `pods.source: kubernetes` in a cluster).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartupTaintConfig {
    /// Whether the agent removes the taint.
    #[serde(default = "yes")]
    pub remove: bool,
    /// The taint's key; every taint with this key (whatever its effect) is removed, and no
    /// other.
    #[serde(default = "default_key")]
    pub key: String,
}

impl Default for StartupTaintConfig {
    fn default() -> Self {
        Self {
            remove: true,
            key: default_key(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_key() -> String {
    DEFAULT_STARTUP_TAINT.to_owned()
}

impl StartupTaintConfig {
    /// Says what is wrong, naming the key, for `Config::validate`.
    pub fn validate(&self) -> Result<(), String> {
        qualified_name(&self.key)
            .map_err(|why| format!("startupTaint.key: {:?} is not a taint key: {why}", self.key))
    }
}

/// A Kubernetes qualified name (`[prefix/]name`), what a taint key must be: the name at
/// most 63 characters of alphanumerics, `-`, `_` and `.`, starting and ending with an
/// alphanumeric; the prefix a DNS subdomain of at most 253 characters.
fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if name.is_empty() || name.len() > 63 {
        return Err("the name part must be 1 to 63 characters".to_owned());
    }
    let edges_ok = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if !edges_ok(name)
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(
            "the name part takes alphanumerics, '-', '_' and '.', and starts and ends with an alphanumeric"
                .to_owned(),
        );
    }
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && edges_ok(l)
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err("the prefix must be a lowercase DNS subdomain".to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_keys() {
        for good in [DEFAULT_STARTUP_TAINT, "agent-not-ready", "a.b-c/x_y.z"] {
            assert_eq!(qualified_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "nodeward.io/",
            "/x",
            "Nodeward.io/x",
            "a/b/c",
            "-x",
            "x y",
        ] {
            assert!(qualified_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_remove_the_nodeward_taint() {
        let config: StartupTaintConfig = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(config, StartupTaintConfig::default());
        assert!(config.remove);
        assert_eq!(config.key, "nodeward.io/agent-not-ready");
    }
}
