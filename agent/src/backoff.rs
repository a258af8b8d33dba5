//! Retry delays for the collector link and enrollment.

use std::time::Duration;

use rand::Rng as _;

/// Exponential backoff with equal jitter: half the step is fixed, half random, so agents
/// that lost the collector together do not all return in the same instant.
pub struct Backoff {
    base: Duration,
    max: Duration,
    step: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, step: 0 }
    }

    pub fn next_delay(&mut self) -> Duration {
        let cap = self
            .base
            .saturating_mul(1 << self.step.min(16))
            .min(self.max);
        self.step = self.step.saturating_add(1);
        let half = cap / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    pub fn reset(&mut self) {
        self.step = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(
            (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first),
            "{first:?}"
        );
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(2), "{d:?}");
        }
        assert!(b.next_delay() >= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
