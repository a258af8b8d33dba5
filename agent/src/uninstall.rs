//! `nodeward-agent uninstall`: detaches every program nodeward pinned on this node and
//! removes its pins, leaving the node as it was before nodeward (run it after the agent's
//! DaemonSet is gone, or the next agent start attaches again).

use std::{path::Path, process::ExitCode};

use crate::bpf;

pub fn run(bpf_pin_path: &Path) -> ExitCode {
    match bpf::remove_all(bpf_pin_path) {
        Ok(removed) if removed.is_empty() => {
            println!(
                "nothing pinned under {}; nothing to remove",
                bpf_pin_path.display()
            );
            ExitCode::SUCCESS
        }
        Ok(removed) => {
            for path in &removed {
                println!("removed {}", path.display());
            }
            println!(
                "nodeward detached from this node ({} pins removed)",
                removed.len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("nodeward-agent uninstall: {err:#}");
            ExitCode::FAILURE
        }
    }
}
