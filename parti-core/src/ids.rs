//! Identifiers: stable worker IDs and per-process instance IDs.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// A stable worker ID such as `worker-3`: `<prefix>-<n>` with `n` in the
/// configured range. A restarted process that reclaims the same ID gets the same
/// partitions back.
///
/// The text is shared: IDs are cloned into every roster, record and map
/// that names a worker, and a clone only counts a reference. Comparison,
/// ordering, hashing and the wire form are those of the text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(Arc<str>);

impl WorkerId {
    /// Builds `<prefix>-<index>`.
    pub fn new(prefix: &str, index: u32) -> Self {
        WorkerId(format!("{prefix}-{index}").into())
    }

    /// Wraps an existing name as it is (used for names read back from storage and
    /// for custom strategies' tests).
    pub fn from_name(name: impl Into<String>) -> Self {
        WorkerId(name.into().into())
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The numeric suffix if the ID has the form `<prefix>-<n>`.
    pub fn index(&self, prefix: &str) -> Option<u32> {
        self.0.strip_prefix(prefix)?.strip_prefix('-')?.parse().ok()
    }
}

impl Serialize for WorkerId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WorkerId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(WorkerId::from_name)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one incarnation of a worker process. A process picks it once at
/// start (the driver derives it from randomness, the simulator from its seed); two
/// processes that hold the same [`WorkerId`] one after the other differ by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(pub u64);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_parses_only_matching_prefix() {
        let id = WorkerId::new("worker", 17);
        assert_eq!(id.as_str(), "worker-17");
        assert_eq!(id.index("worker"), Some(17));
        assert_eq!(id.index("work"), None);
        assert_eq!(WorkerId::from_name("worker-x").index("worker"), None);
    }

    #[test]
    fn the_wire_form_is_the_bare_text() {
        let id = WorkerId::new("worker", 3);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"worker-3\"");
        assert_eq!(serde_json::from_str::<WorkerId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<WorkerId>("3").is_err());
    }
}
