//! Loading YAML configuration files the same way in every binary: size-capped, strict
//! (unknown keys are errors, via `deny_unknown_fields` on the types), validated after
//! parsing, and every error names the file.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
};

use serde::de::DeserializeOwned;

/// Larger files are refused rather than read: a config is a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Checks a parsed configuration for what types alone cannot express.
pub trait Validate {
    /// `Err` with a message that names the offending key.
    fn validate(&self) -> Result<(), String>;
}

/// Reads, parses and validates a configuration file.
pub fn load<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            message: format!("larger than {MAX_CONFIG_BYTES} bytes"),
        });
    }
    parse(path, &text)
}

/// Parses and validates configuration text; `path` only names it in errors.
pub fn parse<T: DeserializeOwned + Validate>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let invalid = |message| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    let config: T = serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
    config.validate().map_err(invalid)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        port: u16,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), String> {
            if self.port == 0 {
                Err("port: must not be 0".into())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let path = Path::new("/etc/x.yaml");
        let unknown = parse::<Sample>(path, "port: 1\nprot: 2\n")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("/etc/x.yaml") && unknown.contains("prot"),
            "{unknown}"
        );
        let invalid = parse::<Sample>(path, "port: 0\n").unwrap_err().to_string();
        assert!(invalid.contains("port: must not be 0"), "{invalid}");
        let binary = parse::<Sample>(path, "\u{0}\u{1}\u{2}")
            .unwrap_err()
            .to_string();
        assert!(binary.contains("/etc/x.yaml"), "{binary}");
    }

    #[test]
    fn missing_and_oversized_files_are_refused() {
        let missing = load::<Sample>(Path::new("/nonexistent/x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/nonexistent/x.yaml"), "{missing}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, format!("port: 1\n#{}\n", "x".repeat(2 * 1024 * 1024))).unwrap();
        let err = load::<Sample>(&big).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
    }
}
