//! Reading a ring buffer from async code: one wake-up drains every record, which is
//! parsed before the next await so the ring's memory is handed back at once.

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};
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
/// counted by the kernel.
pub async fn forward(
    mut ring: AsyncFd<RingBuf<MapData>>,
    source: &'static str,
    parse: impl Fn(&[u8]) -> Option<Event> + Send,
    events: mpsc::Sender<Event>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let mut guard = tokio::select! {
            () = token.cancelled() => return Ok(()),
            guard = ring.readable_mut() => guard.with_context(|| format!("polling the {source} ring buffer"))?,
        };
        let mut batch = Vec::new();
        let reader = guard.get_inner_mut();
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
        guard.clear_ready();
        for event in batch {
            if events.send(event).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Reads a plain-old-data record of type `T` from the start of `bytes`.
pub fn read_record<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= size_of::<T>()).then(|| {
        // SAFETY: the length is checked above, `T: Pod` means any bit pattern is valid,
        // and read_unaligned makes no alignment assumption.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
    })
}
