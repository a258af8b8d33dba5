//! `nodeward-agent check`: a one-shot scan printed as a table or JSON.
//!
//! Exit status: 0 when nothing fails, 1 when a check fails or cannot be judged (`error`:
//! a file the kubelet uses is missing or garbage, never a silent pass), 2 when the scan
//! itself could not run (no kubelet, bad arguments).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use crate::scan::{KubeletSource, ScanOptions, scan};

/// Exit status: nothing fails.
pub const EXIT_OK: u8 = 0;
/// Exit status: a check failed or could not be judged.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the scan could not run.
pub const EXIT_SCAN_ERROR: u8 = 2;

/// Output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables for people.
    #[default]
    Table,
    /// `{"node": ..., "checks": [...]}` and the scan's extras, for machines.
    Json,
}

/// When to colour the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether to colour, given where stdout goes.
    pub fn resolve(self, stdout_is_terminal: bool) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            // https://no-color.org: any non-empty NO_COLOR turns colour off.
            Self::Auto => {
                stdout_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// Arguments of `check`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CheckArgs {
    /// The node's root filesystem as seen from here (e.g. /host in the agent's pod).
    #[arg(long, value_name = "DIR")]
    pub host_root: Option<PathBuf>,
    /// Judge this kubelet process instead of discovering it in /proc.
    #[arg(long, value_name = "PID", conflicts_with = "kubelet_args")]
    pub kubelet_pid: Option<i32>,
    /// Offline: the kubelet's command line, its files read under --host-root.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub kubelet_args: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Colour the table: auto (stdout is a terminal, `NO_COLOR` unset), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

impl CheckArgs {
    /// The scan these arguments ask for.
    pub fn scan_options(&self) -> ScanOptions {
        let kubelet = match (&self.kubelet_pid, &self.kubelet_args) {
            (Some(pid), _) => KubeletSource::Pid(*pid),
            (None, Some(line)) => KubeletSource::Args(line.clone()),
            (None, None) => KubeletSource::Discover,
        };
        ScanOptions {
            host_root: self.host_root.clone(),
            kubelet,
        }
    }
}

/// Runs `check`, colouring per `args.color` against the process's real stdout, and returns
/// the exit status.
pub fn run_check(args: &CheckArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    let color = args.color.resolve(std::io::stdout().is_terminal());
    run_check_with_color(args, color, stdout, stderr)
}

/// Runs `check` with colour decided by the caller.
pub fn run_check_with_color(
    args: &CheckArgs,
    color: bool,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8 {
    let report = match scan(&args.scan_options()) {
        Ok(report) => report,
        Err(e) => {
            let _ = writeln!(stderr, "nodeward check: {e}");
            return EXIT_SCAN_ERROR;
        }
    };
    let written = match args.format {
        Format::Table => stdout.write_all(crate::render_table(&report, color).as_bytes()),
        Format::Json => serde_json::to_writer_pretty(&mut *stdout, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout)),
    };
    if let Err(e) = written.and_then(|()| stdout.flush()) {
        let _ = writeln!(stderr, "nodeward check: writing the report: {e}");
        return EXIT_SCAN_ERROR;
    }
    if report.has_failures() {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}
