//! Stopping a long run cleanly: SIGINT and SIGTERM only raise a flag, and the run checks it
//! between steps and returns an error, so the simulated node, the agent and any reference
//! monitor are taken down by their guards instead of being left behind by a killed process.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn raise_flag(_: i32) {
    // An atomic store is async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on SIGINT and SIGTERM raise the flag instead of ending the process.
pub fn catch() -> anyhow::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(raise_flag),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(signal, &action) }.with_context(|| format!("catching {signal}"))?;
    }
    Ok(())
}

/// An error once SIGINT or SIGTERM has arrived.
pub fn check() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: stopping and removing what the run made");
    }
    Ok(())
}
