use backup_core::{
    Clock, ErrorClass, ExponentialBackoff, Jitter, ManualClock, PermanentReason, RetryBudget,
    RetryDecision, SplitMix64,
};
use chrono::TimeDelta;
use proptest::prelude::*;

fn clock() -> ManualClock {
    ManualClock::new("2026-01-01T00:00:00Z".parse().expect("rfc3339"))
}

/// Runs a task whose every attempt fails with `class` until the budget says stop; returns the
/// number of attempts and the final reason.
fn attempts_until_given_up(max_retries: u32, class: ErrorClass) -> (u32, PermanentReason) {
    let budget = RetryBudget::new(max_retries, ExponentialBackoff::default());
    let clock = clock();
    let mut rng = SplitMix64::new(1);
    let mut retry_count = 0;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match budget.decide(retry_count, class, &clock, &mut rng) {
            RetryDecision::Retry {
                retry_count: next,
                next_retry_at,
            } => {
                assert_eq!(next, retry_count + 1, "each retry spends exactly one");
                assert!(next_retry_at > clock.now());
                retry_count = next;
                clock.set(next_retry_at);
            }
            RetryDecision::FailPermanently { reason } => return (attempts, reason),
            _ => unreachable!("no other decision exists"),
        }
    }
}

proptest! {
    /// A retriable failure every time: exactly maxRetries + 1 attempts, then retries_exhausted.
    #[test]
    fn exactly_max_retries_plus_one_attempts(max_retries in 0u32..=100) {
        let (attempts, reason) = attempts_until_given_up(max_retries, ErrorClass::Retriable);
        prop_assert_eq!(attempts, max_retries + 1);
        prop_assert_eq!(reason, PermanentReason::RetriesExhausted);
    }

    /// A permanent error fails at once, whatever the budget left.
    #[test]
    fn permanent_errors_fail_at_once(max_retries in 0u32..=100, spent in 0u32..=100) {
        let budget = RetryBudget::new(max_retries, ExponentialBackoff::default());
        let decision = budget.decide(spent, ErrorClass::Permanent, &clock(), &mut SplitMix64::new(3));
        prop_assert_eq!(decision, RetryDecision::FailPermanently { reason: PermanentReason::PermanentError });
    }
}

#[test]
fn max_retries_zero_means_one_attempt() {
    assert_eq!(
        attempts_until_given_up(0, ErrorClass::Retriable),
        (1, PermanentReason::RetriesExhausted)
    );
}

#[test]
fn the_default_schedule_with_a_manual_clock() {
    let budget = RetryBudget::new(8, ExponentialBackoff::default().with_jitter(Jitter::None));
    let clock = clock();
    let mut rng = SplitMix64::new(5);
    let mut minutes = Vec::new();
    for retry_count in 0..8 {
        match budget.decide(retry_count, ErrorClass::Retriable, &clock, &mut rng) {
            RetryDecision::Retry { next_retry_at, .. } => {
                minutes.push((next_retry_at - clock.now()).num_minutes());
                clock.advance(TimeDelta::hours(5));
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }
    assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60]);
}
