//! Token buckets by key: requests per agent token, failed authentications per client address.

use std::{collections::HashMap, hash::Hash, sync::Mutex};

use tokio::time::Instant;

/// A rate (`per_second`) and how much may be spent at once (`burst`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rate {
    pub(crate) per_second: f64,
    pub(crate) burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One bucket per key, each starting full; the map forgets buckets full again once it holds
/// many, so it cannot grow without bound.
#[derive(Debug)]
pub(crate) struct Buckets<K> {
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

const FORGET_ABOVE: usize = 100_000;

impl<K: Hash + Eq> Buckets<K> {
    fn with<T>(&self, key: K, rate: Rate, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > FORGET_ABOVE {
            map.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * rate.per_second < rate.burst
            });
        }
        let bucket = map.entry(key).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate.per_second;
        bucket.tokens = (bucket.tokens + refill).min(rate.burst);
        bucket.at = now;
        f(bucket)
    }

    fn wait(bucket: &Bucket, rate: Rate) -> u64 {
        ((1.0 - bucket.tokens) / rate.per_second).ceil().max(1.0) as u64
    }

    /// Takes a token, or says how many seconds until one is there.
    pub(crate) fn take(&self, key: K, rate: Rate) -> Result<(), u64> {
        self.with(key, rate, |b| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                Ok(())
            } else {
                Err(Self::wait(b, rate))
            }
        })
    }

    /// Whether a token is there (none is taken), or how many seconds until one is.
    pub(crate) fn check(&self, key: K, rate: Rate) -> Result<(), u64> {
        self.with(key, rate, |b| {
            if b.tokens >= 1.0 {
                Ok(())
            } else {
                Err(Self::wait(b, rate))
            }
        })
    }

    /// Spends a token if there is one.
    pub(crate) fn spend(&self, key: K, rate: Rate) {
        self.with(key, rate, |b| b.tokens = (b.tokens - 1.0).max(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_empties_and_refills_at_its_rate() {
        let buckets = Buckets::default();
        let rate = Rate {
            per_second: 1.0,
            burst: 3.0,
        };
        for _ in 0..3 {
            assert!(buckets.check("a", rate).is_ok());
            buckets.spend("a", rate);
        }
        assert_eq!(buckets.check("a", rate), Err(1));
        assert_eq!(buckets.take("a", rate), Err(1));
        assert!(buckets.take("b", rate).is_ok(), "keys are apart");
        tokio::time::advance(std::time::Duration::from_millis(1100)).await;
        assert!(buckets.take("a", rate).is_ok());
        assert!(buckets.take("a", rate).is_err());
    }
}
