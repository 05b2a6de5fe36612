//! "Last done" instants for periodic work that is due at once on start.

use std::time::{Duration, Instant};

/// The instant `age` ago, so a periodic task whose last run is set to it runs on its first
/// check. Now instead when the monotonic clock is younger than `age`: it starts near the
/// machine's boot, and a daemon started with the machine has only seconds behind it (a plain
/// `now - age` panicked there). The task then runs `age` later, which only delays it once.
pub fn ago(age: Duration) -> Instant {
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_age_before_the_clock_began_gives_now_instead_of_panicking() {
        let before = Instant::now();
        let t = ago(Duration::MAX);
        assert!(t >= before && t <= Instant::now());
        assert!(ago(Duration::from_millis(5)) <= Instant::now() - Duration::from_millis(5));
    }
}
