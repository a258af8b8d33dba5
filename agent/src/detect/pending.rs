//! Events waiting for their pod's metadata, each with a deadline. Bounded: when full, the
//! oldest is handed back to be judged at once rather than dropped.

use std::{collections::VecDeque, time::Instant};

/// Events held at once; beyond this the oldest is released early.
const CAPACITY: usize = 10_000;

pub struct Pending<T> {
    queue: VecDeque<(Instant, T)>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
        }
    }
}

impl<T> Pending<T> {
    /// Holds `item` until `deadline`; returns an item released early to make room.
    pub fn hold(&mut self, item: T, deadline: Instant) -> Option<T> {
        let overflow = (self.queue.len() >= CAPACITY)
            .then(|| self.queue.pop_front().map(|(_, t)| t))
            .flatten();
        self.queue.push_back((deadline, item));
        overflow
    }

    /// Releases, in arrival order, every item that is `ready` or past its deadline.
    pub fn release(&mut self, now: Instant, mut ready: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for (deadline, item) in self.queue.drain(..) {
            if deadline <= now || ready(&item) {
                out.push(item);
            } else {
                kept.push_back((deadline, item));
            }
        }
        self.queue = kept;
        out
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn releases_when_ready_or_due_in_order() {
        let now = Instant::now();
        let mut pending = Pending::default();
        pending.hold(1, now + Duration::from_secs(2));
        pending.hold(2, now + Duration::from_secs(2));
        pending.hold(3, now + Duration::from_secs(1));
        assert_eq!(pending.release(now, |&n| n == 2), [2]);
        assert_eq!(
            pending.release(now + Duration::from_secs(1), |_| false),
            [3]
        );
        assert_eq!(
            pending.release(now + Duration::from_secs(5), |_| false),
            [1]
        );
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn a_full_queue_hands_back_the_oldest() {
        let now = Instant::now();
        let mut pending = Pending::default();
        for n in 0..CAPACITY {
            assert!(pending.hold(n, now).is_none());
        }
        assert_eq!(pending.hold(CAPACITY, now), Some(0));
    }
}
