//! What /proc still knows about a process when its event is handled: the executable and
//! its argv. Best effort: a short-lived process may be gone, which leaves both empty.

/// Most argv bytes kept; the rest is cut and marked.
const MAX_ARGS_BYTES: usize = 4096;

/// The executable path and argv of `pid`, as far as they can be read.
pub fn describe(pid: u32) -> (String, Vec<String>) {
    if pid == 0 {
        return (String::new(), Vec::new());
    }
    let Ok(process) = procfs::process::Process::new(i32::try_from(pid).unwrap_or(i32::MAX)) else {
        return (String::new(), Vec::new());
    };
    let binary = process
        .exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut args = process.cmdline().unwrap_or_default();
    let mut budget = MAX_ARGS_BYTES;
    if let Some(cut) = args.iter().position(|a| {
        let over = a.len() > budget;
        budget = budget.saturating_sub(a.len());
        over
    }) {
        args.truncate(cut);
        args.push("…(truncated)".into());
    }
    (binary, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_this_process() {
        let (binary, args) = describe(std::process::id());
        assert!(
            binary.ends_with(
                std::env::current_exe()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
            ),
            "{binary}"
        );
        assert!(!args.is_empty());
    }

    #[test]
    fn gone_or_kernel_pids_are_empty() {
        assert_eq!(describe(0), (String::new(), Vec::new()));
        assert_eq!(describe(u32::MAX), (String::new(), Vec::new()));
    }
}
