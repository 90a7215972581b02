//! The retry budget: should a failed attempt be tried again, and when?
//!
//! Why a budget and not "retry until it works": a task that keeps failing holds a policy's slot
//! (no new task is scheduled while one is open) and keeps hitting a repository that may be
//! unhealthy. A task runs at most `maxRetries + 1` times; a permanent error (wrong password, no
//! repository) fails at once, because no number of retries fixes it. Only failed attempts spend
//! budget: an interrupted attempt (agent shutdown) or a claim that lapsed before starting do not.

use chrono::{DateTime, TimeDelta, Utc};

use crate::{Clock, ErrorClass, ExponentialBackoff, PermanentReason, RandomSource};

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryDecision {
    /// Try again, not before `next_retry_at`.
    Retry {
        /// The task's retry count after this failure (failed attempts that spent budget).
        retry_count: u32,
        /// When the task becomes claimable again.
        next_retry_at: DateTime<Utc>,
    },
    /// Give up.
    FailPermanently {
        /// Why.
        reason: PermanentReason,
    },
}

/// Decides retries for one task: its `maxRetries` and the backoff schedule between attempts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    max_retries: u32,
    backoff: ExponentialBackoff,
}

impl RetryBudget {
    /// A budget of `max_retries` retries (so `max_retries + 1` attempts) spaced by `backoff`.
    pub const fn new(max_retries: u32, backoff: ExponentialBackoff) -> Self {
        Self {
            max_retries,
            backoff,
        }
    }

    /// The number of retries allowed.
    pub const fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// Decides after a failed attempt. `retry_count` is the task's count *before* this failure.
    ///
    /// A retriable failure with budget left gives `Retry { retry_count + 1, now + delay(retry_count + 1) }`.
    pub fn decide(
        &self,
        retry_count: u32,
        class: ErrorClass,
        clock: &dyn Clock,
        rng: &mut impl RandomSource,
    ) -> RetryDecision {
        if class == ErrorClass::Permanent {
            return RetryDecision::FailPermanently {
                reason: PermanentReason::PermanentError,
            };
        }
        if retry_count >= self.max_retries {
            return RetryDecision::FailPermanently {
                reason: PermanentReason::RetriesExhausted,
            };
        }
        let retry_count = retry_count + 1;
        let delay = self.backoff.delay(retry_count, rng);
        let delay = TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
        let next_retry_at = clock
            .now()
            .checked_add_signed(delay)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        RetryDecision::Retry {
            retry_count,
            next_retry_at,
        }
    }
}
