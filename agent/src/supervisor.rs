//! Every long-running task is spawned here: tracked, so shutdown can wait for it, and
//! watched, so a task that fails stops the agent (and Kubernetes restarts it) instead of
//! leaving it half-working without anyone noticing.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, warn};

#[derive(Clone, Default)]
pub struct Supervisor {
    tracker: TaskTracker,
    token: CancellationToken,
    failure: Arc<Mutex<Option<anyhow::Error>>>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancelled when shutdown starts, whether by signal or by a failed task.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn spawn<F>(&self, task: &'static str, fut: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let this = self.clone();
        self.tracker.spawn(async move {
            if let Err(err) = fut.await {
                this.fail(task, err);
            }
        });
    }

    fn fail(&self, task: &'static str, err: anyhow::Error) {
        error!(
            task,
            error = format!("{err:#}"),
            "task failed; shutting the agent down"
        );
        let mut failure = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failure.get_or_insert(err.context(format!("task {task} failed")));
        self.token.cancel();
    }

    /// Cancels every task, waits up to `grace` for them, and returns the first failure.
    pub async fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                grace_secs = grace.as_secs(),
                tasks = self.tracker.len(),
                "tasks still running after the grace period"
            );
        }
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_task_cancels_the_rest_and_is_reported() {
        let supervisor = Supervisor::new();
        let token = supervisor.token().clone();
        supervisor.spawn("waits", async move {
            token.cancelled().await;
            Ok(())
        });
        supervisor.spawn("fails", async { anyhow::bail!("boom") });
        supervisor.token().cancelled().await;
        let err = supervisor
            .shutdown(Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(format!("{err:#}"), "task fails failed: boom");
    }

    #[tokio::test]
    async fn clean_shutdown_is_ok() {
        let supervisor = Supervisor::new();
        let token = supervisor.token().clone();
        supervisor.spawn("waits", async move {
            token.cancelled().await;
            Ok(())
        });
        supervisor.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}
