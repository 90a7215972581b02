//! Exponential backoff with a cap and jitter.
//!
//! Why jitter: a fleet of agents that failed together (a repository host rebooted) would retry
//! together and fail together again. Spreading each delay over `[d/2, d]` (equal jitter, the
//! default) keeps the schedule's shape while breaking the herd. The randomness is injected
//! ([`RandomSource`]) so tests and simulations are reproducible.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Settings};

/// How a computed delay `d` is spread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly `d`.
    None,
    /// Uniform in `[d/2, d]`.
    #[default]
    Equal,
    /// Uniform in `[0, d]`.
    Full,
}

/// A source of uniformly distributed `u64`s. Closures `FnMut() -> u64` are sources.
pub trait RandomSource {
    /// The next random value.
    fn next_u64(&mut self) -> u64;
}

impl<F: FnMut() -> u64> RandomSource for F {
    fn next_u64(&mut self) -> u64 {
        self()
    }
}

/// SplitMix64: a tiny, fast, seedable generator; good enough for jitter, not for secrets.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`; the same seed gives the same sequence.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `delay(n) = min(cap, base * factor^(n-1))`, then jitter. Construct with [`ExponentialBackoff::new`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExponentialBackoff {
    base: Duration,
    factor: f64,
    cap: Duration,
    jitter: Jitter,
    // The same in nanoseconds, computed once: `delay` is on the server's result path.
    base_ns: f64,
    cap_ns: f64,
}

impl Default for ExponentialBackoff {
    /// Base 60 s, factor 2, cap 60 min, equal jitter: 1, 2, 4, ..., 32, 60, 60 ... minutes.
    fn default() -> Self {
        Self::build(
            Duration::from_secs(60),
            2.0,
            Duration::from_secs(3600),
            Jitter::Equal,
        )
    }
}

impl ExponentialBackoff {
    /// A validated backoff.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `base` is zero, `factor` is below 1 or not finite, or `cap < base`.
    pub fn new(base: Duration, factor: f64, cap: Duration, jitter: Jitter) -> Result<Self, Error> {
        if base.is_zero() {
            return Err(Error::invalid("base", "0s", "more than 0"));
        }
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(Error::invalid("factor", factor, "a finite number >= 1"));
        }
        if cap < base {
            return Err(Error::invalid(
                "cap",
                humantime::format_duration(cap),
                format!("at least base ({})", humantime::format_duration(base)),
            ));
        }
        Ok(Self::build(base, factor, cap, jitter))
    }

    fn build(base: Duration, factor: f64, cap: Duration, jitter: Jitter) -> Self {
        Self {
            base,
            factor,
            cap,
            jitter,
            base_ns: base.as_nanos() as f64,
            cap_ns: cap.as_nanos() as f64,
        }
    }

    /// The schedule an agent's settings give: base `backoffBaseSeconds`, factor 2, cap
    /// `maxBackoffMinutes`, equal jitter. Validated settings always make a valid backoff.
    pub fn from_settings(settings: &Settings) -> Self {
        let base = Duration::from_secs(u64::from(settings.backoff_base_seconds.max(1)));
        let cap = Duration::from_secs(u64::from(settings.max_backoff_minutes) * 60).max(base);
        Self::build(base, 2.0, cap, Jitter::Equal)
    }

    /// The same schedule with another jitter.
    pub const fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The first delay.
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The largest delay.
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// The jitter mode.
    pub const fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The delay before the `retry`-th retry without jitter: `min(cap, base * factor^(retry-1))`.
    /// `retry` 0 is treated as 1. Saturates at the cap for every `u32`; never panics.
    pub fn max_delay(&self, retry: u32) -> Duration {
        self.duration_of(self.max_delay_ns(retry))
    }

    /// The delay before the `retry`-th retry (n >= 1), jittered with `rng`.
    pub fn delay(&self, retry: u32, rng: &mut impl RandomSource) -> Duration {
        let d = self.max_delay_ns(retry);
        let ns = match self.jitter {
            Jitter::None => d,
            // Each term is at most d/2 and rounding is monotone, so the sum never exceeds d.
            Jitter::Equal => d / 2.0 + unit(rng) * (d / 2.0),
            Jitter::Full => unit(rng) * d,
        };
        self.duration_of(ns)
    }

    fn max_delay_ns(&self, retry: u32) -> f64 {
        let exponent = retry.saturating_sub(1);
        if exponent == 0 {
            return self.base_ns;
        }
        let exponent = i32::try_from(exponent).unwrap_or(i32::MAX);
        let ns = self.base_ns * self.factor.powi(exponent);
        // Also catches NaN and infinity: `powi` overflows to infinity, never panics.
        if ns < self.cap_ns { ns } else { self.cap_ns }
    }

    /// Nanoseconds (at most `cap_ns`) to a `Duration`, monotone and exact at the cap.
    fn duration_of(&self, ns: f64) -> Duration {
        if ns >= self.cap_ns {
            self.cap
        } else if ns < u64::MAX as f64 {
            Duration::from_nanos(ns as u64)
        } else {
            // Beyond 584 years the nanosecond resolution is gone anyway.
            Duration::from_secs_f64(ns / 1e9).min(self.cap)
        }
    }
}

/// Uniform in `[0, 1)` from the top 53 bits.
fn unit(rng: &mut impl RandomSource) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_without_jitter_is_the_documented_one() {
        let b = ExponentialBackoff::default().with_jitter(Jitter::None);
        let mut rng = SplitMix64::new(1);
        let minutes: Vec<u64> = (1..=8)
            .map(|n| b.delay(n, &mut rng).as_secs() / 60)
            .collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn constructor_rejects_invalid_parameters() {
        let s = Duration::from_secs;
        assert!(ExponentialBackoff::new(Duration::ZERO, 2.0, s(1), Jitter::None).is_err());
        assert!(ExponentialBackoff::new(s(1), 0.5, s(1), Jitter::None).is_err());
        assert!(ExponentialBackoff::new(s(1), f64::NAN, s(1), Jitter::None).is_err());
        assert!(ExponentialBackoff::new(s(1), f64::INFINITY, s(1), Jitter::None).is_err());
        assert!(ExponentialBackoff::new(s(2), 2.0, s(1), Jitter::None).is_err());
        assert!(ExponentialBackoff::new(s(1), 1.0, s(1), Jitter::None).is_ok());
    }

    #[test]
    fn extreme_retries_saturate_at_the_cap() {
        let b = ExponentialBackoff::new(
            Duration::from_nanos(1),
            1.000_001,
            Duration::MAX,
            Jitter::Full,
        )
        .expect("valid");
        let mut rng = SplitMix64::new(7);
        assert_eq!(b.max_delay(u32::MAX), Duration::MAX);
        // Full jitter draws below the cap without overflowing on the way (it would panic).
        b.delay(u32::MAX, &mut rng);
        assert_eq!(b.max_delay(0), Duration::from_nanos(1));
        let exact = ExponentialBackoff::new(
            Duration::from_nanos(1),
            1.000_001,
            Duration::MAX,
            Jitter::None,
        )
        .expect("valid");
        assert_eq!(exact.delay(u32::MAX, &mut rng), Duration::MAX);
    }
}
