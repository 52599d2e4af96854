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

/// The key of a worker's assignment record staged under `term`: `w.<term>.<worker>`
/// (the record's piece 0; see [`crate::pieces`]).
pub fn worker_assignment_key(term: u64, worker: &WorkerId) -> String {
    format!("w.{term}.{worker}")
}

/// The key of piece `index` of a worker's record: piece 0 at
/// [`worker_assignment_key`], piece `i > 0` at `w.<term>.<worker>.<i>`.
pub fn assignment_piece_key(term: u64, worker: &WorkerId, index: u32) -> String {
    if index == 0 {
        worker_assignment_key(term, worker)
    } else {
        format!("w.{term}.{worker}.{index}")
    }
}

/// Parses `w.<term>.<worker>` back into its parts (piece 0 only; see
/// [`parse_assignment_piece_key`] for every piece).
pub fn parse_worker_assignment_key(key: &str) -> Option<(u64, WorkerId)> {
    match parse_assignment_piece_key(key)? {
        (term, worker, 0) => Some((term, worker)),
        _ => None,
    }
}

/// Parses a piece key, `w.<term>.<worker>` (piece 0) or
/// `w.<term>.<worker>.<i>` with `i > 0`, into term, worker and piece index.
/// Worker IDs contain no dot (their prefix is checked like a group name).
pub fn parse_assignment_piece_key(key: &str) -> Option<(u64, WorkerId, u32)> {
    let rest = key.strip_prefix("w.")?;
    let (term, rest) = rest.split_once('.')?;
    let term = term.parse().ok()?;
    let (worker, index) = match rest.split_once('.') {
        None => (rest, 0),
        Some((worker, index)) => {
            let index: u32 = index.parse().ok()?;
            // One spelling per piece: no `.0`, no leading zeros or signs.
            if index == 0 || index.to_string() != index_text(key) {
                return None;
            }
            (worker, index)
        }
    };
    if worker.is_empty() {
        return None;
    }
    Some((term, WorkerId::from_name(worker), index))
}

fn index_text(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or_default()
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
        assert_eq!(parse_worker_assignment_key(&key), Some((17, w.clone())));
        assert_eq!(parse_worker_assignment_key("meta"), None);
        assert_eq!(assignment_piece_key(17, &w, 0), key);
        let piece = assignment_piece_key(17, &w, 3);
        assert_eq!(piece, "w.17.worker-3.3");
        assert_eq!(parse_assignment_piece_key(&piece), Some((17, w.clone(), 3)));
        assert_eq!(parse_assignment_piece_key(&key), Some((17, w.clone(), 0)));
        assert_eq!(parse_worker_assignment_key(&piece), None);
        for bad in [
            "w.17.worker-3.0",
            "w.17.worker-3.03",
            "w.17.worker-3.x",
            "w.17.",
            "w.x.w-1",
        ] {
            assert_eq!(parse_assignment_piece_key(bad), None, "{bad}");
        }
        assert!(is_valid_group_name("orders-eu_1"));
        assert!(!is_valid_group_name("a.b"));
        assert!(!is_valid_group_name(""));
    }
}
