//! Re-reads the configuration file when it changes (including a ConfigMap's symlink swap)
//! and publishes it if it is valid. An invalid edit is reported and ignored as a whole:
//! nothing is half-applied, and the running settings stay. The `imds` and `rules` sections
//! take effect live; other changes are reported as waiting for a restart.

use std::{path::PathBuf, sync::Arc, time::Duration};

use nodeward_runtime::config;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    config::Config,
    file_watch::{self, Stamp},
};

const POLL: Duration = Duration::from_secs(1);

/// Publishes `initial`, then every valid change to the file at `path`.
pub fn watch(
    path: PathBuf,
    initial: Config,
    token: CancellationToken,
) -> (
    watch::Receiver<Arc<Config>>,
    impl Future<Output = anyhow::Result<()>>,
) {
    let (tx, rx) = watch::channel(Arc::new(initial));
    let since = Stamp::of(&path);
    let task = async move {
        file_watch::on_change(path, since, POLL, token, |path| reload(path, &tx)).await;
        Ok(())
    };
    (rx, task)
}

fn reload(path: &std::path::Path, tx: &watch::Sender<Arc<Config>>) {
    let new: Config = match config::load(path) {
        Ok(new) => new,
        Err(err) => {
            warn!(error = %err, "configuration change ignored; the running settings stay");
            return;
        }
    };
    let current = tx.borrow().clone();
    if *current == new {
        return;
    }
    // `imds` and `rules` apply live; everything else keeps its running value until a restart.
    let live = Config {
        imds: new.imds.clone(),
        rules: new.rules.clone(),
        ..Config::clone(&current)
    };
    if live != new {
        warn!(
            "configuration changed outside `imds` and `rules`; those changes take effect after a restart"
        );
    }
    if live != *current {
        info!(mode = ?new.imds.mode, "configuration reloaded; applying the imds and rules settings");
        tx.send_replace(Arc::new(live));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImdsMode;

    const BASE: &str = "collector:\n  endpoint: http://127.0.0.1:1\n  tls: disabled\n";

    fn setup(text: &str) -> (tempfile::TempDir, PathBuf, watch::Sender<Arc<Config>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, text).unwrap();
        let (tx, _) = watch::channel(Arc::new(config::load::<Config>(&path).unwrap()));
        (dir, path, tx)
    }

    #[test]
    fn imds_changes_apply_and_others_wait_for_a_restart() {
        let (_dir, path, tx) = setup(BASE);
        std::fs::write(
            &path,
            format!("{BASE}imds:\n  mode: audit\nnodeName: renamed\n"),
        )
        .unwrap();
        reload(&path, &tx);
        let now = tx.borrow().clone();
        assert_eq!(now.imds.mode, ImdsMode::Audit);
        assert_eq!(now.node_name, None, "nodeName changes only on restart");
    }

    #[test]
    fn an_invalid_edit_changes_nothing() {
        let (_dir, path, tx) = setup(&format!("{BASE}imds:\n  mode: audit\n"));
        std::fs::write(
            &path,
            format!("{BASE}imds:\n  mode: enforce\n  blockedCidrs: [not-a-cidr]\n"),
        )
        .unwrap();
        reload(&path, &tx);
        assert_eq!(tx.borrow().imds.mode, ImdsMode::Audit, "not half-applied");
    }
}
