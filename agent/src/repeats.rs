//! Folding repeats: the first occurrence of something is reported at once; further
//! occurrences of the same thing within a window become one finding at the window's end,
//! with their count and first and last time. A loop of attempts therefore costs two
//! findings a window, not one per attempt, and nothing is uncounted.

use std::{
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use nodeward_proto::model::Finding;

struct Window {
    opened: Instant,
    /// The first finding, to word the repeat finding after.
    first: Finding,
    pending: u64,
    pending_first: Option<Timestamp>,
    pending_last: Option<Timestamp>,
}

pub struct Repeats<K> {
    window: Duration,
    open: HashMap<K, Window>,
}

impl<K: Hash + Eq> Repeats<K> {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            open: HashMap::new(),
        }
    }

    /// Takes an occurrence (standing for `finding.count` of them); returns the finding to
    /// report now, if any.
    pub fn admit(&mut self, key: K, finding: Finding, now: Instant) -> Option<Finding> {
        if let Some(window) = self.open.get_mut(&key) {
            window.pending += finding.count;
            window.pending_first.get_or_insert(finding.time);
            window.pending_last = Some(finding.time);
            return None;
        }
        let mut first = finding;
        first.first_seen = Some(first.time);
        first.last_seen = Some(first.time);
        self.open.insert(
            key,
            Window {
                opened: now,
                first: first.clone(),
                pending: 0,
                pending_first: None,
                pending_last: None,
            },
        );
        Some(first)
    }

    /// Closes the windows that are over and returns the repeat findings they held.
    pub fn due(&mut self, now: Instant) -> Vec<Finding> {
        let window = self.window;
        let mut out = Vec::new();
        self.open.retain(|_, w| {
            if now.duration_since(w.opened) < window {
                return true;
            }
            out.extend(repeat(w));
            false
        });
        out
    }

    /// Closes every window (at shutdown).
    pub fn drain(&mut self) -> Vec<Finding> {
        self.open.drain().filter_map(|(_, w)| repeat(&w)).collect()
    }
}

fn repeat(window: &Window) -> Option<Finding> {
    if window.pending == 0 {
        return None;
    }
    let (first, last) = (window.pending_first?, window.pending_last?);
    let mut finding = window.first.clone();
    finding.seq = 0;
    finding.time = last;
    finding.count = window.pending;
    finding.first_seen = Some(first);
    finding.last_seen = Some(last);
    let when = if first == last {
        format!("until {last}")
    } else {
        format!("between {first} and {last}")
    };
    finding.summary = format!(
        "repeated {} more times {when}: {}",
        window.pending, window.first.summary
    );
    Some(finding)
}

#[cfg(test)]
mod tests {
    use nodeward_proto::model::Severity;

    use super::*;

    fn occurrence(secs: i64, count: u64) -> Finding {
        let time = Timestamp::from_second(1_800_000_000 + secs).unwrap();
        Finding {
            count,
            ..Finding::new("imds-access", Severity::High, "pod x tried", time)
        }
    }

    #[test]
    fn first_at_once_then_one_summary_per_window() {
        let start = Instant::now();
        let mut repeats = Repeats::new(Duration::from_mins(1));
        let first = repeats
            .admit("k", occurrence(0, 1), start)
            .expect("first reported at once");
        assert_eq!(first.count, 1);
        assert_eq!(first.first_seen, Some(first.time));
        assert!(repeats.admit("k", occurrence(1, 5), start).is_none());
        assert!(repeats.admit("k", occurrence(9, 3), start).is_none());
        assert!(
            repeats.admit("other", occurrence(2, 1), start).is_some(),
            "other keys are separate"
        );
        assert!(repeats.due(start + Duration::from_secs(59)).is_empty());

        let due = repeats.due(start + Duration::from_mins(1));
        let summary = due.iter().find(|f| f.count == 8).expect("the repeats of k");
        assert_eq!(summary.first_seen, Some(occurrence(1, 0).time));
        assert_eq!(summary.last_seen, Some(occurrence(9, 0).time));
        assert!(
            summary.summary.starts_with("repeated 8 more times"),
            "{}",
            summary.summary
        );
        assert_eq!(due.len(), 1, "a window without repeats closes silently");
        assert!(
            repeats
                .admit("k", occurrence(70, 1), start + Duration::from_secs(70))
                .is_some(),
            "a new window reports at once"
        );
    }

    #[test]
    fn drain_flushes_pending() {
        let now = Instant::now();
        let mut repeats = Repeats::new(Duration::from_mins(1));
        repeats.admit(1, occurrence(0, 1), now);
        repeats.admit(1, occurrence(1, 2), now);
        let drained = repeats.drain();
        assert_eq!(drained.iter().map(|f| f.count).collect::<Vec<_>>(), [2]);
    }
}
