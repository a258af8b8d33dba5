//! Kernel events carry `CLOCK_BOOTTIME` nanoseconds; findings carry wall-clock time.

use jiff::{SignedDuration, Timestamp};
use nix::time::{ClockId, clock_gettime};

/// Converts boot-time nanoseconds to wall-clock time, with the offset between the two
/// clocks taken once at start (NTP slews wall time slowly; that drift is irrelevant for
/// findings).
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    /// Wall-clock time at boot.
    boot: Timestamp,
}

impl BootClock {
    pub fn new() -> Self {
        let since_boot = clock_gettime(ClockId::CLOCK_BOOTTIME)
            .map_or(SignedDuration::ZERO, |ts| {
                SignedDuration::new(ts.tv_sec(), i32::try_from(ts.tv_nsec()).unwrap_or(0))
            });
        Self {
            boot: Timestamp::now() - since_boot,
        }
    }

    pub fn wall_time(self, boot_ns: u64) -> Timestamp {
        let offset = SignedDuration::from_nanos(i64::try_from(boot_ns).unwrap_or(i64::MAX));
        self.boot.checked_add(offset).unwrap_or(self.boot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_in_boot_time_is_about_now() {
        let clock = BootClock::new();
        let ts = clock_gettime(ClockId::CLOCK_BOOTTIME).unwrap();
        let boot_ns = u64::try_from(ts.tv_sec()).unwrap() * 1_000_000_000
            + u64::try_from(ts.tv_nsec()).unwrap();
        let skew = clock
            .wall_time(boot_ns)
            .duration_since(Timestamp::now())
            .abs();
        assert!(skew < SignedDuration::from_secs(1), "skew {skew:?}");
    }
}
