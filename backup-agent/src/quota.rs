//! CPU and bandwidth quotas for restic processes.
//!
//! restic's `--limit-upload` is per process (KiB/s) while `bandwidthLimitMbps` is the agent's
//! whole budget, so the agent keeps a ledger: a starting backup gets
//! `floor(remaining / free backup slots)` (at least 1), and the limits of concurrent backups never
//! add up past the budget. A changed budget applies to processes started afterwards.
//!
//! CPU: `cpuQuotaPercent` q maps to niceness `round(19 * (100 - q) / 99)` (100 -> 0, 50 -> 10,
//! 1 -> 19) and to a budget of `cpus * q / 100` cores shared by the restic processes running at
//! once, passed to each as `GOMAXPROCS` (restic is a Go program; at least 1 each).

use std::collections::HashMap;

use backup_core::TaskId;

/// The niceness for a CPU quota (1-100).
pub fn niceness(cpu_quota_percent: u32) -> i32 {
    let q = cpu_quota_percent.clamp(1, 100) as f64;
    (19.0 * (100.0 - q) / 99.0).round() as i32
}

/// `GOMAXPROCS` for a process starting while `running_with_it` restic processes (itself
/// included) share the CPU budget.
pub fn gomaxprocs(cpus: usize, cpu_quota_percent: u32, running_with_it: usize) -> usize {
    let budget = cpus as f64 * f64::from(cpu_quota_percent.clamp(1, 100)) / 100.0;
    ((budget / running_with_it.max(1) as f64).floor() as usize).max(1)
}

/// The whole upload budget in KiB/s for `mbps` megabits per second.
pub fn budget_kib(mbps: u32) -> u64 {
    u64::from(mbps) * 1_000_000 / 8 / 1024
}

/// Who holds how much of the upload budget.
#[derive(Debug, Default)]
pub struct BandwidthLedger {
    held: HashMap<TaskId, u64>,
}

impl BandwidthLedger {
    /// Reserves a share for a starting backup. `None` when uploads are unlimited.
    ///
    /// `backup_slots` is `maxConcurrentBackups`; the free slots are those not held by running
    /// backups, this one included.
    pub fn reserve(&mut self, task: TaskId, mbps: Option<u32>, backup_slots: u32) -> Option<u64> {
        let budget = budget_kib(mbps?);
        let used: u64 = self.held.values().sum();
        let remaining = budget.saturating_sub(used);
        let free_slots = u64::from(backup_slots)
            .saturating_sub(self.held.len() as u64)
            .max(1);
        let share = (remaining / free_slots).max(1);
        self.held.insert(task, share);
        Some(share)
    }

    /// Gives a finished backup's share back.
    pub fn release(&mut self, task: TaskId) {
        self.held.remove(&task);
    }

    /// The KiB/s held by running backups.
    pub fn in_use(&self) -> u64 {
        self.held.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn niceness_follows_the_documented_mapping() {
        assert_eq!((niceness(100), niceness(50), niceness(1)), (0, 10, 19));
    }

    #[test]
    fn gomaxprocs_shares_the_budget_and_never_drops_below_one() {
        assert_eq!(gomaxprocs(8, 50, 1), 4);
        assert_eq!(gomaxprocs(8, 50, 2), 2);
        assert_eq!(gomaxprocs(2, 50, 2), 1);
        assert_eq!(gomaxprocs(2, 1, 1), 1);
    }

    #[test]
    fn the_ledger_never_exceeds_the_budget_with_one_to_four_backups() {
        for mbps in [1, 3, 20, 100, 1000, 100_000] {
            for slots in 1..=4u32 {
                let mut ledger = BandwidthLedger::default();
                let budget = budget_kib(mbps);
                let tasks: Vec<TaskId> = (0..slots).map(|_| TaskId::new()).collect();
                for (i, t) in tasks.iter().enumerate() {
                    let share = ledger.reserve(*t, Some(mbps), slots).expect("limited");
                    assert!(share >= 1);
                    if budget >= u64::from(slots) {
                        assert!(
                            ledger.in_use() <= budget,
                            "{mbps} Mbps, {slots} slots, {} started",
                            i + 1
                        );
                    }
                }
                // One finishes; its share goes to the next starter.
                ledger.release(tasks[0]);
                let next = ledger
                    .reserve(TaskId::new(), Some(mbps), slots)
                    .expect("limited");
                if budget >= u64::from(slots) {
                    assert!(ledger.in_use() <= budget);
                    assert!(next >= 1);
                }
            }
        }
        assert_eq!(budget_kib(20), 2441, "20 Mbit/s is 2441 KiB/s");
        assert_eq!(
            BandwidthLedger::default().reserve(TaskId::new(), None, 2),
            None
        );
    }

    #[test]
    fn exact_shares_for_twenty_megabits_and_two_slots() {
        let mut ledger = BandwidthLedger::default();
        assert_eq!(ledger.reserve(TaskId::new(), Some(20), 2), Some(1220));
        assert_eq!(ledger.reserve(TaskId::new(), Some(20), 2), Some(1221));
        assert_eq!(ledger.in_use(), 2441);
    }
}
