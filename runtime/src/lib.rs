//! Process plumbing shared by nodeward's binaries.
#![forbid(unsafe_code)]

pub mod config;
pub mod files;
pub mod http;
pub mod tls;

use clap::ValueEnum;
use tracing_subscriber::{EnvFilter, fmt};

/// Exit code for unusable input such as a bad config file (`EX_USAGE`).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// The log flag every binary takes (`#[command(flatten)]`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "NODEWARD_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    /// For people; coloured only on a terminal and never with `NO_COLOR`.
    #[default]
    Text,
    /// One JSON object per event, for log pipelines.
    Json,
}

/// Installs the global `tracing` subscriber. `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// SIGTERM (how Kubernetes stops a pod) and SIGINT, caught from the moment this is
/// created: install it before slow start-up work, so a stop during start-up is a clean
/// shutdown rather than the default action (death).
pub struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers; needs a tokio runtime with signals enabled.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Completes on the next (or an already received) signal, naming it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Completes on SIGTERM or SIGINT, naming which.
///
/// # Panics
///
/// If the signal handlers cannot be installed (no tokio runtime with signals enabled).
pub async fn shutdown_signal() -> &'static str {
    ShutdownSignals::install()
        .expect("installing signal handlers")
        .recv()
        .await
}
