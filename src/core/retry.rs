//! When a failed job runs again: the worker's retry schedule for every job kind.

use std::time::Duration;

/// Exponential backoff from `base`, doubling per attempt, capped at an hour; a server's
/// Retry-After wins when it asks for longer.
pub fn backoff(attempts: i32, base: Duration, retry_after: Option<Duration>) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.clamp(1, 20).saturating_sub(1));
    let d = exp.min(Duration::from_secs(3600));
    match retry_after {
        Some(r) if r > d => r,
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_honours_retry_after() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(1, base, None), Duration::from_millis(100));
        assert_eq!(backoff(3, base, None), Duration::from_millis(400));
        assert_eq!(backoff(40, base, None), Duration::from_secs(3600).min(base * (1 << 19)));
        assert_eq!(backoff(1, base, Some(Duration::from_secs(5))), Duration::from_secs(5));
    }
}
