//! Exports: every stored finding, copied to a JSON-lines file and/or a webhook, as the
//! stored record or as OCSF.
//!
//! The exporter follows the store by cursor, like a SOC subscriber does: the live feed
//! only wakes it up, and what it sends is read from the store in id order. So it never
//! skips a finding when it falls behind, and with `cursorFile` it resumes after a restart.

pub mod config;
pub mod exporter;
pub mod ocsf;
pub mod sink;

use std::path::PathBuf;

use hyper::StatusCode;

pub use self::{
    config::{ExportConfig, Format, WebhookConfig},
    exporter::Exporter,
    sink::ExportStats,
};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("invalid export configuration: {0}")]
    Config(String),
    #[error("cannot open export file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write export file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or write export cursor file {path}")]
    Cursor {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("export cursor file {path} does not hold a finding id: {content:?}")]
    BadCursor { path: PathBuf, content: String },
    #[error("cannot set up TLS for the export webhook")]
    Tls(#[source] std::io::Error),
    #[error("webhook request to {host} failed")]
    Request {
        host: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("webhook {host} did not answer within {timeout:?}")]
    Timeout {
        host: String,
        timeout: std::time::Duration,
    },
    #[error("webhook {host} answered {status}")]
    Status { host: String, status: StatusCode },
    #[error("stored finding {id} cannot be read")]
    Decode {
        id: u64,
        #[source]
        source: nodeward_proto::ConvertError,
    },
    #[error("finding {id} cannot be encoded as JSON")]
    Encode {
        id: u64,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
