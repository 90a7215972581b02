use std::time::Duration;

use backup_core::{ExponentialBackoff, Jitter, SplitMix64};
use proptest::prelude::*;

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![Just(Jitter::None), Just(Jitter::Equal), Just(Jitter::Full)]
}

/// Any valid backoff: base 1 ns to 1 day, factor 1 to 10, cap from base up to Duration::MAX.
fn backoff() -> impl Strategy<Value = ExponentialBackoff> {
    (
        1u64..86_400_000_000_000,
        1.0f64..10.0,
        any::<u64>(),
        any::<bool>(),
        jitter(),
    )
        .prop_map(|(base, factor, extra, huge_cap, jitter)| {
            let base = Duration::from_nanos(base);
            let cap = if huge_cap {
                Duration::MAX
            } else {
                base + Duration::from_nanos(extra % 1_000_000_000_000_000)
            };
            ExponentialBackoff::new(base, factor, cap, jitter).expect("valid by construction")
        })
}

proptest! {
    /// The delay never exceeds the cap, for any retry number, and never panics.
    #[test]
    fn delay_never_exceeds_the_cap(b in backoff(), retry in any::<u32>(), seed in any::<u64>()) {
        let mut rng = SplitMix64::new(seed);
        prop_assert!(b.delay(retry, &mut rng) <= b.cap());
        prop_assert!(b.max_delay(retry) <= b.cap());
    }

    /// Without jitter the schedule never goes down as retries go up.
    #[test]
    fn without_jitter_the_schedule_is_non_decreasing(b in backoff(), retry in 0u32..u32::MAX) {
        let b = b.with_jitter(Jitter::None);
        let mut rng = SplitMix64::new(0);
        prop_assert!(b.delay(retry, &mut rng) <= b.delay(retry + 1, &mut rng));
    }

    /// Jitter stays inside its bounds: equal in [d/2, d], full in [0, d], none exactly d.
    #[test]
    fn jitter_stays_inside_its_bounds(b in backoff(), retry in any::<u32>(), seed in any::<u64>()) {
        let d = b.max_delay(retry);
        let mut rng = SplitMix64::new(seed);
        let got = b.delay(retry, &mut rng);
        match b.jitter() {
            Jitter::None => prop_assert_eq!(got, d),
            Jitter::Equal => prop_assert!(got >= d / 2 && got <= d, "{got:?} outside [{:?}, {d:?}]", d / 2),
            Jitter::Full => prop_assert!(got <= d),
            _ => unreachable!("no other jitter exists"),
        }
    }

    /// Extreme random sources (all zeros, all ones) stay in bounds too.
    #[test]
    fn extreme_random_values_stay_in_bounds(b in backoff(), retry in any::<u32>(), ones in any::<bool>()) {
        let value = if ones { u64::MAX } else { 0 };
        let mut rng = move || value;
        let d = b.max_delay(retry);
        let got = b.delay(retry, &mut rng);
        prop_assert!(got <= d);
        if b.jitter() == Jitter::Equal {
            prop_assert!(got >= d / 2);
        }
    }
}

#[test]
fn equal_jitter_spreads_the_herd() {
    let b = ExponentialBackoff::default();
    let mut rng = SplitMix64::new(99);
    let delays: std::collections::BTreeSet<Duration> =
        (0..100).map(|_| b.delay(3, &mut rng)).collect();
    assert!(
        delays.len() > 90,
        "100 agents should not all wait the same time"
    );
    assert!(
        delays
            .iter()
            .all(|d| *d >= Duration::from_secs(120) && *d <= Duration::from_secs(240))
    );
}
