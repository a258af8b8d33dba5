//! nodeward's own processes around a simulated node: a collector on loopback, an agent
//! pointed at the node's cgroups, and a SOC `tail` subscriber. Real binaries, real gRPC
//! over sockets, a real SQLite file; each writes its log to the node's scratch directory,
//! which is printed when a test fails.

mod agent;
mod collector;
mod daemon;
mod tail;

pub use agent::{AgentProcess, AgentSpec};
pub use collector::CollectorProcess;
pub use daemon::Daemon;
pub use tail::TailProcess;
