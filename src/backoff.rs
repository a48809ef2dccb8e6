//! Exponential backoff with jitter, shared by sources (reconnects) and sinks
//! (delivery retries). Jitter keeps a fleet of gateways from retrying in step
//! after a shared outage.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The next wait: doubles up to `max`, each drawn from [½·d, d].
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        let half = d / 2;
        half + d.saturating_sub(half).mul_f64(fastrand::f64())
    }

    /// The next wait with full jitter: drawn from [0, d], d doubling up to
    /// `max` (retries of many clients spread over the whole interval).
    pub fn next_full_jitter(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d.mul_f64(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let waits: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits[5] >= Duration::from_millis(400) && waits[5] <= Duration::from_millis(800));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
