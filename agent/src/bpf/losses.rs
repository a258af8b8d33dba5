//! Reports of what a program's ring buffer had no room for. Every program counts them in a
//! per-CPU slot; this reads the slot and sends the cumulative total whenever it grows, and
//! the pipeline turns growth past what it already reported into an `events-lost` finding.

use std::time::Duration;

use aya::maps::{MapData, PerCpuArray};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::event::Event;

/// How often the counters are read.
const POLL: Duration = Duration::from_secs(5);

/// Sends `source`'s total at start (losses while the agent was away count too) and
/// whenever it changes, until cancelled.
pub async fn watch(
    stats: PerCpuArray<MapData, u64>,
    index: u32,
    source: &'static str,
    events: mpsc::Sender<Event>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut sent = None;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let total = match stats.get(&index, 0) {
            Ok(per_cpu) => per_cpu.iter().sum::<u64>(),
            Err(error) => {
                debug!(%error, source, "reading loss counters");
                continue;
            }
        };
        if sent != Some(total) {
            if events.send(Event::Lost { source, total }).await.is_err() {
                return Ok(());
            }
            sent = Some(total);
        }
    }
}
