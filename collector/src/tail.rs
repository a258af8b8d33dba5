//! `nodeward-collector tail`: a SOC-side client that prints every finding as it arrives.
//! It keeps the id of the last finding it printed and, when the stream breaks, resumes
//! after it, so a collector restart does not cost the reader a finding.

use std::{io::Write as _, time::Duration};

use anyhow::Context as _;
use clap::ValueEnum;
use nodeward_proto::{
    model::{self, FindingRecord},
    v1::{SubscribeRequest, soc_service_client::SocServiceClient},
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::warn;

use crate::{client::EndpointArgs, output, soc_service::CURSOR_METADATA};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people, one line per finding.
    #[default]
    #[value(alias = "text")]
    Table,
    /// One JSON object per line: the stored record.
    Json,
    /// One JSON object per line: an OCSF 1.8.0 Detection or Compliance Finding.
    Ocsf,
}

const RETRY: Duration = Duration::from_secs(2);

/// Runs until cancelled. Fails only while it has never subscribed, so a wrong endpoint is
/// reported at once; after that it keeps resuming.
pub async fn run(
    endpoint: &EndpointArgs,
    mut after: Option<u64>,
    filter: model::FindingFilter,
    format: Format,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let endpoint = endpoint.endpoint()?;
    if format == Format::Table {
        print_line(&output::finding_header())?;
    }
    loop {
        let result = tokio::select! {
            () = token.cancelled() => return Ok(()),
            result = follow(&endpoint, &mut after, &filter, format) => result,
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
    filter: &model::FindingFilter,
    format: Format,
) -> anyhow::Result<()> {
    let channel = endpoint.connect().await.context("connecting")?;
    let mut client = SocServiceClient::new(channel);
    let response = client
        .subscribe(SubscribeRequest {
            after_id: *after,
            filter: Some(filter.clone().into()),
        })
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
        Format::Json => output::finding_json(record)?,
        Format::Ocsf => output::finding_ocsf(record)?,
        Format::Table => output::finding_row(record),
    };
    print_line(&line)
}

fn print_line(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    // Flush per line: the reader is often a pipe (jq, a log shipper) that waits for it.
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}
