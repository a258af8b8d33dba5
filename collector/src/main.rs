//! nodeward-collector: gathers what nodeward agents report and feeds it to the SOC.
//!
//! `serve` opens the store, accepts agents' finding streams, stores each finding once and
//! publishes it to subscribers; `tail` is the SOC-side client that prints the feed.

mod agent_service;
mod config;
#[allow(dead_code, unused_imports)]
// TEMPORARY (export helper): remove when export is wired into serve.
mod export;
mod feed;
mod server;
mod soc_service;
mod store;
mod tail;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use nodeward_runtime::{EXIT_BAD_CONFIG, LogArgs, config::load};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    config::{Config, Storage, TlsMode},
    server::Collector,
    store::Store,
};

#[derive(Parser)]
#[command(name = "nodeward-collector", version, about = "nodeward collector")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive agents' findings and serve the SOC feed until SIGTERM.
    Serve {
        /// Collector configuration (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and say what it sets, without running anything.
    Validate {
        /// Collector configuration (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print every finding the collector stores, as it arrives.
    Tail {
        /// The collector's gRPC endpoint.
        #[arg(
            long,
            env = "NODEWARD_COLLECTOR",
            default_value = "http://127.0.0.1:7443"
        )]
        endpoint: String,
        /// Start after this finding id (0: everything stored); default: from now on.
        #[arg(long)]
        since: Option<u64>,
        #[arg(long, value_enum, default_value_t)]
        format: tail::Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Validate { config: path } => {
            return match load::<Config>(&path) {
                Ok(config) => {
                    println!(
                        "{}: valid; listen {}, storage {}, TLS {:?}",
                        path.display(),
                        config.listen,
                        config.storage,
                        config.tls
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("nodeward-collector: {err}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            };
        }
        Command::Serve { config } => match load::<Config>(&config) {
            Ok(config) => Ok(config),
            Err(err) => {
                eprintln!("nodeward-collector: {err}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        },
        Command::Tail {
            endpoint,
            since,
            format,
        } => Err((endpoint, since, format)),
    };
    nodeward_runtime::init_logging(cli.log.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match command {
            Ok(config) => serve(config).await,
            Err((endpoint, since, format)) => {
                let token = CancellationToken::new();
                let stop = token.clone();
                tokio::spawn(async move {
                    nodeward_runtime::shutdown_signal().await;
                    stop.cancel();
                });
                tail::run(endpoint, since, format, token).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(error = format!("{err:#}"), "nodeward-collector stopped");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    info!(version = env!("CARGO_PKG_VERSION"), listen = %config.listen, "nodeward collector starting");
    if config.tls == TlsMode::Disabled {
        warn!(
            "TLS is disabled: agents and SOC clients connect in plaintext without authentication (tests and demos only)"
        );
    }
    let store = match config.storage().map_err(anyhow::Error::msg)? {
        Storage::Sqlite(path) => {
            let store = Store::open_sqlite(&path).await?;
            info!(path = %path.display(), "SQLite store open");
            store
        }
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    Collector::new(store)
        .serve(listener, async {
            let signal = nodeward_runtime::shutdown_signal().await;
            info!(signal, "shutting down");
        })
        .await
}
