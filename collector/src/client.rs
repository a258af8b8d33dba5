//! What the SOC-side commands (`tail`, `findings`, `nodes`) share: where the collector
//! is, and which findings to show.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use nodeward_proto::{model, v1::soc_service_client::SocServiceClient};
use nodeward_runtime::tls::TlsFiles;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The collector to read from.
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// The collector's gRPC endpoint.
    #[arg(
        long,
        env = "NODEWARD_COLLECTOR",
        default_value = "http://127.0.0.1:7443"
    )]
    pub endpoint: String,
    /// CA bundle the collector's certificate must chain to (https endpoints).
    #[arg(long, env = "NODEWARD_CA_FILE", requires_all = ["cert_file", "key_file"])]
    pub ca_file: Option<PathBuf>,
    /// This SOC client's certificate (`spiffe://nodeward/soc/<name>`).
    #[arg(long, env = "NODEWARD_CERT_FILE", requires = "ca_file")]
    pub cert_file: Option<PathBuf>,
    /// Its private key.
    #[arg(long, env = "NODEWARD_KEY_FILE", requires = "ca_file")]
    pub key_file: Option<PathBuf>,
}

impl EndpointArgs {
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .with_context(|| format!("invalid endpoint {:?}", self.endpoint))?;
        let (Some(ca), Some(cert), Some(key)) = (&self.ca_file, &self.cert_file, &self.key_file)
        else {
            return Ok(endpoint);
        };
        let files = TlsFiles {
            ca_file: ca.clone(),
            cert_file: cert.clone(),
            key_file: key.clone(),
        };
        let pem = files.read()?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pem.ca))
            .identity(Identity::from_pem(&pem.cert, &pem.key));
        endpoint
            .tls_config(tls)
            .with_context(|| format!("TLS for {:?}", self.endpoint))
    }

    /// A connected `SocService` client.
    pub async fn soc_client(&self) -> anyhow::Result<SocServiceClient<Channel>> {
        let endpoint = self.endpoint()?;
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {}", endpoint.uri()))?;
        Ok(SocServiceClient::new(channel))
    }
}

/// Which findings to show; every flag given must match, a repeated flag matches any of
/// its values.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only findings at least this severe.
    #[arg(long, value_enum)]
    pub min_severity: Option<SeverityArg>,
    /// Only findings of this category (repeatable).
    #[arg(long = "category", value_enum)]
    pub categories: Vec<CategoryArg>,
    /// Only findings of this rule id (repeatable).
    #[arg(long = "rule")]
    pub rules: Vec<String>,
    /// Only findings from this node (repeatable).
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Only findings about a pod in this namespace (repeatable).
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeverityArg {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CategoryArg {
    Enforcement,
    Runtime,
    Posture,
    Health,
}

impl From<&FilterArgs> for model::FindingFilter {
    fn from(args: &FilterArgs) -> Self {
        Self {
            min_severity: args.min_severity.map(|s| match s {
                SeverityArg::Info => model::Severity::Info,
                SeverityArg::Low => model::Severity::Low,
                SeverityArg::Medium => model::Severity::Medium,
                SeverityArg::High => model::Severity::High,
                SeverityArg::Critical => model::Severity::Critical,
            }),
            categories: args
                .categories
                .iter()
                .map(|c| match c {
                    CategoryArg::Enforcement => model::Category::Enforcement,
                    CategoryArg::Runtime => model::Category::Runtime,
                    CategoryArg::Posture => model::Category::Posture,
                    CategoryArg::Health => model::Category::Health,
                })
                .collect(),
            rule_ids: args.rules.clone(),
            nodes: args.nodes.clone(),
            namespaces: args.namespaces.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[command(flatten)]
        filter: FilterArgs,
    }

    #[test]
    fn flags_become_a_filter() {
        let cli = Cli::parse_from([
            "x",
            "--endpoint",
            "http://c:1",
            "--min-severity",
            "high",
            "--category",
            "runtime",
            "--category",
            "health",
            "--rule",
            "imds-access",
            "--node",
            "a",
            "--node",
            "b",
            "--namespace",
            "prod",
        ]);
        assert_eq!(cli.endpoint.endpoint, "http://c:1");
        let filter = model::FindingFilter::from(&cli.filter);
        assert_eq!(
            filter,
            model::FindingFilter {
                min_severity: Some(model::Severity::High),
                categories: vec![model::Category::Runtime, model::Category::Health],
                rule_ids: vec!["imds-access".into()],
                nodes: vec!["a".into(), "b".into()],
                namespaces: vec!["prod".into()],
            }
        );
        let none = Cli::parse_from(["x"]);
        assert!(model::FindingFilter::from(&none.filter).is_empty());
    }
}
