//! Sensors and enforcers share one small life cycle, so `main` can start whatever this
//! node supports and say plainly why the rest cannot run.

use aya::Ebpf;
use tokio::sync::mpsc;

use std::sync::Arc;

use crate::{bpf::Pins, event::Event, metrics::Metrics, supervisor::Supervisor};

/// What a module gets to run with.
#[derive(Clone)]
pub struct ModuleContext {
    /// Spawns and watches the module's tasks; its token is cancelled at shutdown.
    pub supervisor: Supervisor,
    /// Where modules deliver what they see.
    pub events: mpsc::Sender<Event>,
    /// Where what must outlive the agent is pinned.
    pub pins: Pins,
    /// The agent's metrics, for state only a module knows.
    pub metrics: Arc<Metrics>,
}

/// An enforcer or sensor.
pub trait Module {
    /// Short stable name for logs and findings.
    fn name(&self) -> &'static str;

    /// `Err(reason)` when this node cannot run the module (missing cgroup, kernel feature,
    /// privilege); checked before `start`.
    fn can_run(&self) -> Result<(), String>;

    /// Loads and attaches what the module needs from the one loaded object (shared, so each
    /// map exists once) and spawns its tasks.
    fn start(&mut self, ctx: &ModuleContext, ebpf: &mut Ebpf) -> anyhow::Result<()>;

    /// Releases what `start` acquired. Tasks stop through the cancellation token.
    fn stop(&mut self);
}
