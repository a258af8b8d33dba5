//! `nodeward-collector findings` and `nodeward-collector nodes`: one-shot reads of what
//! the collector stores.

use std::{fmt::Write as _, io::Write as _};

use anyhow::Context as _;
use clap::ValueEnum;
use nodeward_proto::{
    model::{self, FindingRecord},
    v1::{ListFindingsRequest, ListNodesRequest},
};

use crate::{
    client::EndpointArgs,
    output::{self, NodeView},
    soc_service::MAX_PAGE_SIZE,
};

/// How `findings` and `nodes` print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    #[default]
    Table,
    /// One JSON object per line.
    Json,
}

/// Prints stored findings after `since`, matching `filter`, at most `limit` of them.
/// JSON lines are written page by page, so a large listing starts at once; a table
/// needs every row first.
pub async fn findings(
    endpoint: &EndpointArgs,
    since: u64,
    filter: model::FindingFilter,
    limit: Option<u64>,
    format: Format,
) -> anyhow::Result<()> {
    let mut client = endpoint.soc_client().await?;
    let mut after = since;
    let mut left = limit.unwrap_or(u64::MAX);
    let mut rows = Vec::new();
    while left > 0 {
        let page_size = u32::try_from(left.min(u64::from(MAX_PAGE_SIZE))).unwrap_or(MAX_PAGE_SIZE);
        let page = client
            .list_findings(ListFindingsRequest {
                filter: Some(filter.clone().into()),
                after_id: after,
                page_size,
            })
            .await
            .context("listing findings")?
            .into_inner();
        let mut out = std::io::stdout().lock();
        for wire in page.findings {
            let id = wire.id;
            let record = FindingRecord::try_from(wire)
                .with_context(|| format!("finding {id} from the collector"))?;
            left -= 1;
            match format {
                Format::Json => writeln!(out, "{}", output::finding_json(&record)?)
                    .context("writing to stdout")?,
                Format::Table => rows.push(record),
            }
        }
        out.flush().context("writing to stdout")?;
        if page.next_after_id == 0 {
            break;
        }
        after = page.next_after_id;
    }
    if format == Format::Table {
        let mut text = output::findings_table(&rows);
        if let Some(last) = rows.last() {
            let _ = write!(
                text,
                "\n{} findings; the next ones with --since {}",
                rows.len(),
                last.id
            );
        }
        print_out(&text)?;
    }
    Ok(())
}

/// Prints every node the collector knows.
pub async fn nodes(endpoint: &EndpointArgs, format: Format) -> anyhow::Result<()> {
    let nodes: Vec<NodeView> = endpoint
        .soc_client()
        .await?
        .list_nodes(ListNodesRequest {})
        .await
        .context("listing nodes")?
        .into_inner()
        .nodes
        .into_iter()
        .map(NodeView::from)
        .collect();
    match format {
        Format::Json if nodes.is_empty() => Ok(()),
        Format::Json => print_out(output::nodes_json(&nodes)?.trim_end()),
        Format::Table => print_out(&output::nodes_table(&nodes)),
    }
}

/// Writes `text` and a newline; an error (a closed pipe) is returned, not a panic.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}
