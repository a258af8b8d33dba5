//! Deadline waits: tests poll for a condition instead of sleeping a fixed time.

use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some`, and returns that value.
///
/// Polls every few milliseconds at first and backs off to 50 ms, so fast conditions are seen
/// at once and slow ones do not burn a core. Panics naming `what` if `deadline` passes first.
///
/// ```no_run
/// # use std::time::Duration;
/// # use nodeward_testkit::wait_until;
/// # let server_is_up = || true;
/// wait_until(Duration::from_secs(5), "the server to come up", || server_is_up().then_some(()));
/// ```
#[track_caller]
pub fn wait_until<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(value) = f() {
            return value;
        }
        let waited = start.elapsed();
        assert!(
            waited < deadline,
            "timed out after {waited:?} waiting for {what}"
        );
        std::thread::sleep(pause.min(deadline.saturating_sub(waited)));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Like [`wait_until`], but returns `false` on timeout instead of panicking.
///
/// For cleanup code, which must not panic (a panic while a test is already unwinding aborts
/// the whole test binary).
pub fn poll_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if f() {
            return true;
        }
        let waited = start.elapsed();
        if waited >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline.saturating_sub(waited)));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
