//! The report for people: one table per group, failures first with their remediation, and a
//! summary line. Colour only when asked (the caller knows whether stdout is a terminal).

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL;
use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table};

use crate::checks::{CheckResult, Group, Status};
use crate::scan::PostureReport;

/// Wide enough for a path and a remediation side by side; narrower terminals still wrap.
const TABLE_WIDTH: u16 = 150;

/// Renders `report` as text tables.
pub fn render_table(report: &PostureReport, color: bool) -> String {
    let mut out = String::new();
    let bold = |s: &str| {
        if color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    };
    let pid = report
        .kubelet_pid
        .map_or_else(|| "offline".to_owned(), |p| format!("pid {p}"));
    let _ = writeln!(
        out,
        "{}",
        bold(&format!("Node {} — kubelet {pid}", report.node))
    );
    let mut groups: Vec<Group> = report.checks.iter().map(|c| c.group).collect();
    groups.sort_unstable();
    groups.dedup();
    for group in groups {
        let mut rows: Vec<&CheckResult> =
            report.checks.iter().filter(|c| c.group == group).collect();
        // Stable: within a status, catalogue order.
        rows.sort_by_key(|c| c.status);
        let _ = writeln!(out, "\n{}", bold(group.heading()));
        let _ = writeln!(out, "{}", table(&rows, color));
    }
    let count = |s: Status| report.checks.iter().filter(|c| c.status == s).count();
    let _ = writeln!(
        out,
        "\n{} fail, {} error, {} warn, {} pass",
        count(Status::Fail),
        count(Status::Error),
        count(Status::Warn),
        count(Status::Pass)
    );
    out
}

fn table(rows: &[&CheckResult], color: bool) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(TABLE_WIDTH);
    if color {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    table.set_header(vec!["Status", "Check", "Observed", "Remediation"]);
    for check in rows {
        let mut status = Cell::new(check.status.as_str().to_uppercase());
        if color {
            status = status
                .fg(status_color(check.status))
                .add_attribute(Attribute::Bold);
        }
        let mut what = format!("{}\n{}", check.title, check.id);
        if !check.benchmarks.is_empty() {
            let _ = write!(what, "\n{}", check.benchmarks.join(" "));
        }
        let mut observed = check.observed.clone();
        if !check.source.is_empty() {
            let _ = write!(observed, "\nsource: {}", check.source);
        }
        let fix = if check.status == Status::Pass {
            String::new()
        } else {
            format!("expected: {}\n{}", check.expected, check.remediation)
        };
        table.add_row(vec![
            status,
            Cell::new(what),
            Cell::new(observed),
            Cell::new(fix),
        ]);
    }
    table
}

fn status_color(status: Status) -> Color {
    match status {
        Status::Fail => Color::Red,
        Status::Error => Color::Magenta,
        Status::Warn => Color::Yellow,
        Status::Pass => Color::Green,
    }
}
