//! Draining what the IMDS programs count and report. One task reads the ring buffer and,
//! every second, sweeps the programs' attempt counters for totals no report carried (the
//! tail of a burst under the report rate limit). Both paths turn totals into counts
//! against `IMDS_REPORTED`, a pinned map only this task writes, so every attempt is
//! counted once, across agent restarts too.

use std::time::Duration;

use anyhow::Context as _;
use aya::maps::{HashMap, MapData, MapError, RingBuf};
use nix::time::{ClockId, clock_gettime};
use nodeward_common::imds::{HOOK_NONE, ImdsEvent, ImdsKey, ImdsSeen, REPORT_INTERVAL_NS};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::event::Event;

/// How often the attempt counters are swept.
const SWEEP: Duration = Duration::from_secs(1);
/// Sweeps between prunings of `IMDS_REPORTED` entries whose counter is gone.
const PRUNE_EVERY: u32 = 30;

/// Turns attempt totals into counts of attempts not yet reported.
pub struct Accounts {
    seen: HashMap<MapData, ImdsKey, ImdsSeen>,
    reported: HashMap<MapData, ImdsKey, u64>,
}

impl Accounts {
    pub fn new(
        seen: HashMap<MapData, ImdsKey, ImdsSeen>,
        reported: HashMap<MapData, ImdsKey, u64>,
    ) -> Self {
        Self { seen, reported }
    }

    /// Attempts `total` stands for beyond what was reported (a total below that means the
    /// counter was recreated after eviction), and records it as reported.
    fn account(&mut self, key: &ImdsKey, total: u64) -> Result<u64, MapError> {
        let before = match self.reported.get(key, 0) {
            Ok(before) => before,
            Err(MapError::KeyNotFound) => 0,
            Err(err) => return Err(err),
        };
        let count = if total >= before {
            total - before
        } else {
            total
        };
        if count > 0 {
            self.reported.insert(key, total, 0)?;
        }
        Ok(count)
    }

    /// Counted attempts of keys whose last report is older than the rate limit, as
    /// events standing for them (no process: they may span several).
    fn sweep(&mut self, now_ns: u64, prune: bool) -> Result<Vec<(ImdsEvent, u64)>, MapError> {
        let entries: Vec<(ImdsKey, ImdsSeen)> = self.seen.iter().collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (key, seen) in &entries {
            if now_ns.saturating_sub(seen.last_report_ns) < REPORT_INTERVAL_NS {
                continue;
            }
            let count = self.account(key, seen.total)?;
            if count > 0 {
                out.push((unreported(key, seen), count));
            }
        }
        if prune {
            let stale: Vec<ImdsKey> = self
                .reported
                .keys()
                .filter_map(Result::ok)
                .filter(|k| !entries.iter().any(|(e, _)| e == k))
                .collect();
            for key in stale {
                let _ = self.reported.remove(&key);
            }
        }
        Ok(out)
    }
}

fn unreported(key: &ImdsKey, seen: &ImdsSeen) -> ImdsEvent {
    ImdsEvent {
        cgroup_id: key.cgroup_id,
        boot_ns: seen.last_seen_ns,
        total: seen.total,
        pid: 0,
        uid: 0,
        family: key.family,
        protocol: key.protocol,
        port: key.port,
        verdict: key.verdict,
        hook: HOOK_NONE,
        ifindex: 0,
        addr: key.addr,
        comm: [0; 16],
    }
}

/// Forwards reports and swept counts until cancelled.
pub async fn read(
    mut ring: AsyncFd<RingBuf<MapData>>,
    mut accounts: Accounts,
    events: mpsc::Sender<Event>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut sweep = tokio::time::interval(SWEEP);
    let mut sweeps = 0u32;
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            guard = ring.readable_mut() => {
                let mut guard = guard.context("polling the IMDS ring buffer")?;
                let reader = guard.get_inner_mut();
                while let Some(item) = reader.next() {
                    let Some(event) = parse(&item) else {
                        warn!(len = item.len(), "IMDS ring buffer record has an unexpected size");
                        continue;
                    };
                    let key = key_of(&event);
                    let count = accounts.account(&key, event.total).context("IMDS_REPORTED")?;
                    if count > 0 {
                        batch.push((event, count));
                    }
                }
                guard.clear_ready();
            }
            _ = sweep.tick() => {
                sweeps = sweeps.wrapping_add(1);
                batch = accounts.sweep(boot_ns(), sweeps.is_multiple_of(PRUNE_EVERY)).context("sweeping IMDS_SEEN")?;
            }
        }
        for (event, count) in batch {
            // Waiting here (rather than dropping) lets the ring buffer absorb a burst; if it
            // overflows, the kernel counts what it could not store and the sweep still
            // finds the attempts.
            if events.send(Event::Imds { event, count }).await.is_err() {
                return Ok(());
            }
        }
    }
}

fn key_of(event: &ImdsEvent) -> ImdsKey {
    ImdsKey {
        cgroup_id: event.cgroup_id,
        addr: event.addr,
        family: event.family,
        protocol: event.protocol,
        port: event.port,
        verdict: event.verdict,
    }
}

fn parse(bytes: &[u8]) -> Option<ImdsEvent> {
    (bytes.len() >= size_of::<ImdsEvent>()).then(|| {
        // SAFETY: the length is checked above, ImdsEvent is plain old data (any bit pattern
        // is valid), and read_unaligned makes no alignment assumption.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<ImdsEvent>()) }
    })
}

fn boot_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME).map_or(0, |ts| {
        u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(ts.tv_nsec()).unwrap_or(0)
    })
}
