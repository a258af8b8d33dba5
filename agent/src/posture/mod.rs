//! Continuous posture: the kubelet's effective configuration and the node files it uses
//! (`nodeward-posture`), scanned at start and again when
//! - a file or directory the last verdicts depend on changes (inotify, debounced),
//! - the kubelet changes: another pid, start time or command line (`/proc` polled),
//! - `posture.intervalSeconds` passed without either.
//!
//! Each scan becomes a [`PostureSnapshot`], published only when it says something new about
//! the node (verdicts, scan error, IMDS mode), so an unchanged rescan sends nothing. A scan
//! that cannot run (no kubelet) is a snapshot with `scanError` and no checks, and the
//! monitor keeps trying. [`forward::to_outbox`] stores the snapshots for the collector and,
//! through [`regressions::Baseline`], a finding for each check that got worse.

pub mod config;
pub mod forward;
mod kubelet;
pub mod regressions;
pub mod snapshot;
mod watcher;

#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use nodeward_posture::{KubeletSource, PostureReport, ScanOptions};
use nodeward_proto::model::PostureSnapshot;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::{
    config::PostureConfig,
    kubelet::{Fingerprint, KubeletProbe},
    snapshot::{from_error, from_report, same_posture},
    watcher::FileWatcher,
};

/// How often `/proc` is looked at for a restarted or reconfigured kubelet.
const PROCESS_POLL: Duration = Duration::from_secs(2);
/// Quiet time after a file event before rescanning.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// The published snapshots: `None` until the first scan ends.
pub type PostureReceiver = watch::Receiver<Option<PostureSnapshot>>;

/// Starts monitoring as `config` says with the default timings; see [`PostureMonitor::watch`].
pub fn watch_posture<T, F>(
    config: &PostureConfig,
    imds_mode: watch::Receiver<T>,
    mode_of: F,
    token: CancellationToken,
) -> (
    PostureReceiver,
    impl Future<Output = anyhow::Result<()>> + Send + use<T, F>,
)
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> String + Send + 'static,
{
    PostureMonitor::new(config.clone()).watch(imds_mode, mode_of, token)
}

/// The posture monitor's settings.
#[derive(Debug, Clone)]
pub struct PostureMonitor {
    config: PostureConfig,
    first_generation: u64,
    process_poll: Duration,
    debounce: Duration,
}

impl PostureMonitor {
    /// Generations from 1, `/proc` polled every 2 s, file events debounced by 500 ms.
    pub fn new(config: PostureConfig) -> Self {
        Self {
            config,
            first_generation: 1,
            process_poll: PROCESS_POLL,
            debounce: DEBOUNCE,
        }
    }

    #[cfg(test)]
    /// The generation of the first snapshot (each one after it is one more).
    #[must_use]
    pub fn first_generation(mut self, generation: u64) -> Self {
        self.first_generation = generation;
        self
    }

    #[cfg(test)]
    /// How often `/proc` is polled for kubelet changes.
    #[must_use]
    pub fn process_poll(mut self, every: Duration) -> Self {
        self.process_poll = every;
        self
    }

    #[cfg(test)]
    /// Quiet time after a file event before rescanning.
    #[must_use]
    pub fn debounce(mut self, quiet: Duration) -> Self {
        self.debounce = quiet;
        self
    }

    /// Returns the snapshots as they are published, and the task that scans until `token`
    /// is cancelled. Each snapshot's `imdsMode` is `mode_of` the current value of
    /// `imds_mode` (e.g. the live configuration); a new mode publishes the last snapshot
    /// again under it, without rescanning. Disabled, the task publishes nothing and waits.
    pub fn watch<T, F>(
        self,
        imds_mode: watch::Receiver<T>,
        mode_of: F,
        token: CancellationToken,
    ) -> (
        PostureReceiver,
        impl Future<Output = anyhow::Result<()>> + Send + use<T, F>,
    )
    where
        T: Send + Sync + 'static,
        F: Fn(&T) -> String + Send + 'static,
    {
        let (tx, rx) = watch::channel(None);
        let publisher = Publisher {
            tx,
            next_generation: self.first_generation,
            last: None,
        };
        (rx, self.run(publisher, imds_mode, mode_of, token))
    }

    async fn run<T, F>(
        self,
        mut publisher: Publisher,
        mut imds_mode: watch::Receiver<T>,
        mode_of: F,
        token: CancellationToken,
    ) -> anyhow::Result<()>
    where
        T: Send + Sync + 'static,
        F: Fn(&T) -> String + Send + 'static,
    {
        if !self.config.enabled {
            info!("posture monitoring disabled (posture.enabled: false)");
            token.cancelled().await;
            return Ok(());
        }
        let options = ScanOptions {
            host_root: self.config.host_root.clone(),
            kubelet: KubeletSource::Discover,
        };
        let probe = KubeletProbe::new(self.config.host_root.as_deref());
        let mut files = FileWatcher::new(self.debounce);
        let mut poll =
            tokio::time::interval_at(Instant::now() + self.process_poll, self.process_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut mode_open = true;
        let mut reason = "start";
        loop {
            files.clear();
            let kubelet = fingerprint(&probe).await;
            let scanned = scan(&options).await;
            let dependencies = scanned.as_ref().map_or(&[][..], |r| &r.dependencies[..]);
            files.watch(dependencies);
            let mode = mode_of(&imds_mode.borrow_and_update());
            publisher.offer(&scanned, mode, reason);
            let timer = tokio::time::sleep(self.config.interval());
            tokio::pin!(timer);
            reason = loop {
                let settle_at = files.settle_at();
                tokio::select! {
                    () = token.cancelled() => return Ok(()),
                    () = &mut timer => break "timer",
                    () = sleep_until(settle_at), if settle_at.is_some() => break "file change",
                    () = files.next_event() => {}
                    _ = poll.tick() => {
                        if fingerprint(&probe).await != kubelet {
                            break "kubelet change";
                        }
                    }
                    changed = imds_mode.changed(), if mode_open => match changed {
                        Ok(()) => publisher.remode(mode_of(&imds_mode.borrow_and_update())),
                        // The configuration is not watched any more: the mode stays.
                        Err(_) => mode_open = false,
                    },
                }
            };
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Scans in the blocking pool; why it could not run, as people should read it.
async fn scan(options: &ScanOptions) -> Result<PostureReport, String> {
    let options = options.clone();
    match tokio::task::spawn_blocking(move || {
        nodeward_posture::scan_at(&options, SystemTime::now())
    })
    .await
    {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(err)) => Err(err.to_string()),
        Err(err) => Err(format!("the posture scanner failed: {err}")),
    }
}

async fn fingerprint(probe: &KubeletProbe) -> Fingerprint {
    let probe = probe.clone();
    tokio::task::spawn_blocking(move || probe.fingerprint())
        .await
        .unwrap_or_else(|err| Fingerprint::Unlisted(err.to_string()))
}

/// Numbers snapshots and publishes those that say something new.
struct Publisher {
    tx: watch::Sender<Option<PostureSnapshot>>,
    next_generation: u64,
    last: Option<PostureSnapshot>,
}

impl Publisher {
    fn offer(&mut self, scanned: &Result<PostureReport, String>, mode: String, reason: &str) {
        let (generation, time) = (self.next_generation, Timestamp::now());
        let next = match scanned {
            Ok(report) => from_report(report, generation, time, mode),
            Err(err) => from_error(err.clone(), generation, time, mode),
        };
        self.publish(next, reason);
    }

    fn remode(&mut self, mode: String) {
        let Some(last) = &self.last else { return };
        if last.imds_mode == mode {
            return;
        }
        let next = PostureSnapshot {
            generation: self.next_generation,
            time: Timestamp::now(),
            imds_mode: mode,
            ..last.clone()
        };
        self.publish(next, "imds mode change");
    }

    fn publish(&mut self, next: PostureSnapshot, reason: &str) {
        if self
            .last
            .as_ref()
            .is_some_and(|last| same_posture(last, &next))
        {
            return;
        }
        if let Some(err) = &next.scan_error {
            warn!(
                generation = next.generation,
                reason,
                error = err,
                "posture scan could not run; retrying on kubelet changes and on the timer"
            );
        } else {
            info!(
                generation = next.generation,
                reason,
                checks = next.checks.len(),
                failing = next.failing().count(),
                "posture snapshot"
            );
        }
        self.next_generation += 1;
        self.last = Some(next.clone());
        self.tx.send_replace(Some(next));
    }
}
