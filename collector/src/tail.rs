//! `nodeward-collector tail`: a SOC-side client that prints every finding as it arrives.
//! It keeps the id of the last finding it printed and, when the stream breaks, resumes
//! after it, so a collector restart does not cost the reader a finding.

use std::{io::Write as _, time::Duration};

use anyhow::Context as _;
use clap::ValueEnum;
use nodeward_proto::{
    model::FindingRecord,
    v1::{SubscribeRequest, soc_service_client::SocServiceClient},
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::warn;

use crate::soc_service::CURSOR_METADATA;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    /// One line per finding for people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

const RETRY: Duration = Duration::from_secs(2);

/// Runs until cancelled. Fails only while it has never subscribed, so a wrong endpoint is
/// reported at once; after that it keeps resuming.
pub async fn run(
    endpoint: String,
    mut after: Option<u64>,
    format: Format,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let endpoint = Endpoint::from_shared(endpoint.clone())
        .with_context(|| format!("invalid endpoint {endpoint:?}"))?;
    loop {
        let result = tokio::select! {
            () = token.cancelled() => return Ok(()),
            result = follow(&endpoint, &mut after, format) => result,
        };
        match result {
            Err(err) if after.is_none() => {
                return Err(err.context(format!("subscribing at {}", endpoint.uri())));
            }
            Err(err) => warn!(
                error = format!("{err:#}"),
                after, "feed interrupted; resuming"
            ),
            Ok(()) => warn!(after, "the collector ended the feed; resuming"),
        }
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn follow(
    endpoint: &Endpoint,
    after: &mut Option<u64>,
    format: Format,
) -> anyhow::Result<()> {
    let channel = endpoint.connect().await.context("connecting")?;
    let mut client = SocServiceClient::new(channel);
    let response = client
        .subscribe(SubscribeRequest { after_id: *after })
        .await?;
    if after.is_none() {
        // Subscribed "from now": learn where now was, so a reconnect resumes there.
        let cursor = response
            .metadata()
            .get(CURSOR_METADATA)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        *after = Some(cursor.context("the collector did not say where the feed starts")?);
    }
    let mut feed = response.into_inner();
    while let Some(record) = feed.message().await? {
        let id = record.id;
        let record = FindingRecord::try_from(record)
            .with_context(|| format!("finding {id} from the collector"))?;
        print(&record, format)?;
        *after = Some(id);
    }
    Ok(())
}

fn print(record: &FindingRecord, format: Format) -> anyhow::Result<()> {
    let line = match format {
        Format::Json => serde_json::to_string(record)?,
        Format::Text => {
            let f = &record.finding;
            format!(
                "{} {} {:?} {} {}",
                f.time, record.node_name, f.severity, f.rule_id, f.summary
            )
        }
    };
    let mut out = std::io::stdout().lock();
    // Flush per line: the reader is often a pipe (jq, a log shipper) that waits for it.
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}
