//! Reading a ring buffer from async code: one wake-up drains every record, which is
//! parsed before the next await so the ring's memory is handed back at once.

use std::time::Duration;

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use nodeward_common::wakeup::DRAIN_INTERVAL_MS;
use tokio::{io::unix::AsyncFd, sync::mpsc, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::event::Event;

/// Registers a ring buffer with tokio's reactor.
pub fn register(ring: RingBuf<MapData>) -> anyhow::Result<AsyncFd<RingBuf<MapData>>> {
    // SAFETY: the RingBuf owns its map fd, which stays open and unchanged for as long as
    // the AsyncFd (which owns the RingBuf) lives.
    unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::Error::new(e.into_parts().1))
        .context("registering a ring buffer with tokio")
}

/// Forwards every record, parsed by `parse`, as an event until cancelled. Waiting on a
/// full channel (rather than dropping) lets the ring absorb bursts; what overflows it is
/// counted by the kernel. The sensors' programs wake the reader only now and then (see
/// `nodeward_common::wakeup`), so the ring is also drained on a timer.
pub async fn forward(
    mut ring: AsyncFd<RingBuf<MapData>>,
    source: &'static str,
    parse: impl Fn(&[u8]) -> Option<Event> + Send,
    events: mpsc::Sender<Event>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut drain = tokio::time::interval(Duration::from_millis(DRAIN_INTERVAL_MS));
    drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let batch = tokio::select! {
            () = token.cancelled() => {
                // What the ring holds when the agent stops is sent on, not left behind:
                // records since the last wake-up wait for a drain.
                for event in read_all(ring.get_mut(), source, &parse) {
                    if events.send(event).await.is_err() {
                        break;
                    }
                }
                return Ok(());
            }
            guard = ring.readable_mut() => {
                let mut guard = guard.with_context(|| format!("polling the {source} ring buffer"))?;
                // Cleared before reading: a record that arrives meanwhile wakes again.
                guard.clear_ready();
                read_all(guard.get_inner_mut(), source, &parse)
            }
            _ = drain.tick() => read_all(ring.get_mut(), source, &parse),
        };
        for event in batch {
            if events.send(event).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Every record in the ring, parsed; the ring's memory is handed back as it goes.
fn read_all(
    reader: &mut RingBuf<MapData>,
    source: &'static str,
    parse: &impl Fn(&[u8]) -> Option<Event>,
) -> Vec<Event> {
    let mut batch = Vec::new();
    while let Some(item) = reader.next() {
        if let Some(event) = parse(&item) {
            batch.push(event);
        } else {
            warn!(
                source,
                len = item.len(),
                "ring buffer record has an unexpected size"
            );
        }
    }
    batch
}

/// Reads a plain-old-data record of type `T` from the start of `bytes`.
pub fn read_record<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= size_of::<T>()).then(|| {
        // SAFETY: the length is checked above, `T: Pod` means any bit pattern is valid,
        // and read_unaligned makes no alignment assumption.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
    })
}
