//! What nodeward's eBPF programs cost per call, from the kernel's own accounting
//! (`BPF_ENABLE_STATS`: run time and run count per program). Throughput ratios carry the
//! noise of a shared machine; the time spent inside each program per call does not, so it
//! shows directly whether a change to a program made it cheaper.
//!
//! The accounting itself costs two clock reads per call, so it is on only while this
//! module measures, never during the throughput runs.

use std::{collections::BTreeMap, os::fd::OwnedFd};

use anyhow::Context as _;
use aya::{
    programs::loaded_programs,
    sys::{Stats, enable_stats},
};

/// The programs nodeward loads, by their kernel names (truncated to 15 bytes).
const PROGRAMS: [&str; 7] = [
    "imds_connect4",
    "imds_connect6",
    "imds_sendmsg4",
    "imds_sendmsg6",
    "imds_sock_creat",
    "imds_egress",
    "exec_sensor",
];

/// Run time and count per program id, taken while statistics are on.
struct Snapshot(BTreeMap<u32, (String, u64, u64)>);

impl Snapshot {
    fn take() -> anyhow::Result<Self> {
        let mut programs = BTreeMap::new();
        for info in loaded_programs() {
            let info = info.context("reading a loaded program's info")?;
            let Some(name) = info.name_as_str() else {
                continue;
            };
            if PROGRAMS.contains(&name) {
                let nanos = u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
                programs.insert(info.id(), (name.to_owned(), nanos, info.run_count()));
            }
        }
        Ok(Self(programs))
    }
}

/// Statistics on for as long as this lives.
pub struct Measurement {
    _stats: OwnedFd,
    before: Snapshot,
}

impl Measurement {
    pub fn start() -> anyhow::Result<Self> {
        let stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
        Ok(Self {
            _stats: stats,
            before: Snapshot::take()?,
        })
    }

    /// Per program that ran: (name, calls, mean nanoseconds per call).
    pub fn finish(self) -> anyhow::Result<Vec<(String, u64, f64)>> {
        let after = Snapshot::take()?;
        let mut costs = Vec::new();
        for (id, (name, nanos, count)) in after.0 {
            let (nanos_before, count_before) = self
                .before
                .0
                .get(&id)
                .map_or((0, 0), |(_, nanos, count)| (*nanos, *count));
            let calls = count.saturating_sub(count_before);
            if calls == 0 {
                continue;
            }
            #[expect(clippy::cast_precision_loss, reason = "a mean in nanoseconds")]
            let mean = nanos.saturating_sub(nanos_before) as f64 / calls as f64;
            costs.push((name, calls, mean));
        }
        Ok(costs)
    }
}
