//! JSON lines appended to a file or written to standard output, flushed per batch.

use std::{
    fs::OpenOptions,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tracing::warn;

use super::{Encoded, ExportStats, ids};
use crate::export::{ExportError, Result};

/// Findings name pods, commands and addresses: readable by the collector's user and
/// group only.
const FILE_MODE: u32 = 0o640;

pub struct FileSink {
    /// `-` for standard output; named in errors.
    path: PathBuf,
    out: Box<dyn AsyncWrite + Send + Unpin>,
}

impl FileSink {
    /// Opens `path` for appending (creating it), or standard output for `-`.
    pub fn open(path: &Path) -> Result<Self> {
        let out: Box<dyn AsyncWrite + Send + Unpin> = if path == Path::new("-") {
            Box::new(tokio::io::stdout())
        } else {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(FILE_MODE)
                .open(path)
                .map_err(|source| ExportError::Open {
                    path: path.to_owned(),
                    source,
                })?;
            Box::new(tokio::fs::File::from_std(file))
        };
        Ok(Self {
            path: path.to_owned(),
            out,
        })
    }

    /// Appends one line per finding and flushes.
    pub async fn write(&mut self, batch: &[Encoded]) -> Result<()> {
        // One buffer per batch: a batch reaches the file in as few writes as possible,
        // so a reader tailing it rarely sees half a line.
        let mut buf = Vec::with_capacity(batch.iter().map(|e| e.json.len() + 1).sum());
        for encoded in batch {
            buf.extend_from_slice(&encoded.json);
            buf.push(b'\n');
        }
        let written = async {
            self.out.write_all(&buf).await?;
            self.out.flush().await
        }
        .await;
        written.map_err(|source| ExportError::Write {
            path: self.path.clone(),
            source,
        })
    }

    pub(super) async fn deliver(&mut self, batch: &[Encoded], stats: &ExportStats) {
        match self.write(batch).await {
            Ok(()) => stats.add_exported(batch.len()),
            Err(err) => {
                stats.add_failures(batch.len());
                warn!(
                    error = format!("{:#}", anyhow::Error::new(err)),
                    finding.ids = ?ids(batch),
                    "export to file failed; these findings are not in it"
                );
            }
        }
    }
}
