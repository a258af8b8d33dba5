//! nodeward-collector: gathers what nodeward agents report and feeds it to the SOC.
//!
//! `serve` opens the store, accepts agents' finding and posture streams, stores each
//! finding once and publishes it to subscribers; `tail`, `findings` and `nodes` are the
//! SOC-side clients that print the feed, the stored findings and the fleet.

mod agent_service;
mod auth;
mod client;
mod config;
mod enroll;
mod export;
mod feed;
mod list;
mod metrics;
mod output;
mod redact;
mod retention;
mod server;
mod silence;
mod soc_service;
mod store;
mod tail;
mod tls;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use nodeward_runtime::{EXIT_BAD_CONFIG, LogArgs, config::load, tls::ClientAuth};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    client::{EndpointArgs, FilterArgs},
    config::{Config, Storage},
    enroll::EnrollmentApi,
    export::Exporter,
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
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// Start after this finding id (0: everything stored); default: from now on.
        #[arg(long)]
        since: Option<u64>,
        #[arg(long, value_enum, default_value_t)]
        format: tail::Format,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// List stored findings, oldest first, each with its unique id.
    Findings {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// Only findings after this id (the last id of an earlier listing).
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// At most this many findings.
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, value_enum, default_value_t)]
        format: list::Format,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// List the fleet: every node, when it last reported, its enforcement mode and its
    /// failing posture checks.
    Nodes {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[arg(long, value_enum, default_value_t)]
        format: list::Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Validate { config: path } => {
            return match load::<Config>(&path) {
                Ok(config) => {
                    println!(
                        "{}: valid; listen {}, storage {}, TLS {:?}, HTTP {}, retention {:#}, silenceAfter {:#}, export {}, enrollment {}",
                        path.display(),
                        config.listen,
                        config.storage_redacted(),
                        config.tls,
                        config.http_listen,
                        config.retention,
                        config.silence_after,
                        if config.export.is_some() { "on" } else { "off" },
                        if config.enrollment.is_some() {
                            "on"
                        } else {
                            "off"
                        },
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
            Ok(config) => Run::Serve(Box::new(config)),
            Err(err) => {
                eprintln!("nodeward-collector: {err}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        },
        Command::Tail {
            endpoint,
            since,
            format,
            filter,
        } => Run::Tail(endpoint, since, format, filter),
        Command::Findings {
            endpoint,
            since,
            limit,
            format,
            filter,
        } => Run::Findings(endpoint, since, limit, format, filter),
        Command::Nodes { endpoint, format } => Run::Nodes(endpoint, format),
    };
    nodeward_runtime::init_logging(cli.log.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match command {
            Run::Serve(config) => serve(*config).await,
            Run::Tail(endpoint, since, format, filter) => {
                let token = CancellationToken::new();
                let stop = token.clone();
                tokio::spawn(async move {
                    nodeward_runtime::shutdown_signal().await;
                    stop.cancel();
                });
                tail::run(&endpoint, since, (&filter).into(), format, token).await
            }
            Run::Findings(endpoint, since, limit, format, filter) => {
                list::findings(&endpoint, since, (&filter).into(), limit, format).await
            }
            Run::Nodes(endpoint, format) => list::nodes(&endpoint, format).await,
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

/// What runs once the command line is understood.
enum Run {
    Serve(Box<Config>),
    Tail(EndpointArgs, Option<u64>, tail::Format, FilterArgs),
    Findings(EndpointArgs, u64, Option<u64>, list::Format, FilterArgs),
    Nodes(EndpointArgs, list::Format),
}

async fn serve(config: Config) -> anyhow::Result<()> {
    info!(version = env!("CARGO_PKG_VERSION"), listen = %config.listen, "nodeward collector starting");
    // Agents that come to enroll have no certificate yet: the handshake lets them in and
    // `auth` refuses them everything else.
    let client_auth = if config.enrollment.is_some() {
        ClientAuth::Optional
    } else {
        ClientAuth::Required
    };
    let tls = match config.tls_files().map_err(anyhow::Error::msg)? {
        Some(files) => Some(tls::ServerTls::load(files, client_auth).context("collector TLS")?),
        None => None,
    };
    if tls.is_none() {
        warn!(
            "TLS is disabled: agents and SOC clients connect in plaintext without authentication (tests and demos only)"
        );
    }
    // Opened before the store, so that a bad export path stops the collector at once.
    let exporter = config.export.as_ref().map(Exporter::new).transpose()?;
    let store = match config.storage().map_err(anyhow::Error::msg)? {
        Storage::Sqlite(path) => {
            let store = Store::open_sqlite(&path).await?;
            info!(path = %path.display(), "SQLite store open");
            store
        }
        Storage::Postgres(url) => {
            let password = config.storage_password().map_err(anyhow::Error::msg)?;
            let store = Store::open_postgres(&url, password.as_deref()).await?;
            info!(storage = config.storage_redacted(), "PostgreSQL store open");
            store
        }
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let http = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("listening on {} (httpListen)", config.http_listen))?;
    let mut collector = Collector::new(store)
        .silence_after(config.silence_after())
        .retention(config.retention())
        .http(http);
    if let Some(exporter) = exporter {
        collector = collector.export(exporter);
    }
    if let (Some(enrollment), Some(trust)) = (&config.enrollment, &config.ca_file) {
        let api =
            EnrollmentApi::from_config(enrollment, trust.clone(), collector.metrics()).await?;
        info!(
            service_account = enrollment.service_account,
            audience = enrollment.audience,
            ttl_s = enrollment.ttl().as_secs(),
            ca = %enrollment.ca_cert_file.display(),
            "agent enrollment on: agents without a certificate may request one for their node"
        );
        collector = collector.enrollment(api);
    }
    if let Some(tls) = tls {
        info!(
            "mutual TLS: agents and SOC clients must present certificates from the CA; \
             the certificate files are reloaded when they change"
        );
        collector = collector.tls(tls);
    }
    collector
        .serve(listener, async {
            let signal = nodeward_runtime::shutdown_signal().await;
            info!(signal, "shutting down");
        })
        .await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn command_line_is_consistent_and_parses() {
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "nodeward-collector",
            "findings",
            "--since",
            "41",
            "--format",
            "json",
            "--rule",
            "imds-access",
            "--limit",
            "5",
            "--endpoint",
            "http://collector:7443",
        ]);
        let Command::Findings {
            endpoint,
            since,
            limit,
            format,
            filter,
        } = cli.command
        else {
            panic!("not the findings command");
        };
        assert_eq!(
            (endpoint.endpoint.as_str(), since, limit, format),
            ("http://collector:7443", 41, Some(5), list::Format::Json)
        );
        assert_eq!(filter.rules, ["imds-access"]);
        for args in [
            &["nodeward-collector", "nodes", "--format", "table"][..],
            &[
                "nodeward-collector",
                "tail",
                "--format",
                "ocsf",
                "--min-severity",
                "high",
            ],
            &[
                "nodeward-collector",
                "tail",
                "--format",
                "text",
                "--category",
                "posture",
            ],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }
}
