//! Bucket and key names, derived from the group name. Part of the wire contract.

use crate::ids::WorkerId;

/// Key of the leader record in the leader bucket.
pub const LEADER_KEY: &str = "leader";
/// Key of the commit record in the assignments bucket.
pub const META_KEY: &str = "meta";

/// The names of a group's three buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketNames {
    /// Stable-ID reservations and heartbeats.
    pub members: String,
    /// The leader key.
    pub leader: String,
    /// `meta` and the per-worker records.
    pub assignments: String,
}

impl BucketNames {
    /// `parti_<group>_members`, `parti_<group>_leader`, `parti_<group>_assignments`.
    pub fn for_group(group: &str) -> Self {
        BucketNames {
            members: format!("parti_{group}_members"),
            leader: format!("parti_{group}_leader"),
            assignments: format!("parti_{group}_assignments"),
        }
    }
}

/// The key of a worker's assignment record staged under `term`: `w.<term>.<worker>`.
pub fn worker_assignment_key(term: u64, worker: &WorkerId) -> String {
    format!("w.{term}.{worker}")
}

/// Parses `w.<term>.<worker>` back into its parts.
pub fn parse_worker_assignment_key(key: &str) -> Option<(u64, WorkerId)> {
    let rest = key.strip_prefix("w.")?;
    let (term, worker) = rest.split_once('.')?;
    Some((term.parse().ok()?, WorkerId::from_name(worker)))
}

/// Whether `group` may be used in bucket names (`[a-zA-Z0-9_-]+`).
pub fn is_valid_group_name(group: &str) -> bool {
    !group.is_empty()
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let w = WorkerId::new("worker", 3);
        let key = worker_assignment_key(17, &w);
        assert_eq!(key, "w.17.worker-3");
        assert_eq!(parse_worker_assignment_key(&key), Some((17, w)));
        assert_eq!(parse_worker_assignment_key("meta"), None);
        assert!(is_valid_group_name("orders-eu_1"));
        assert!(!is_valid_group_name("a.b"));
        assert!(!is_valid_group_name(""));
    }
}
