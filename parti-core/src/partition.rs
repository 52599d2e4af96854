//! Partitions and their stable 64-bit IDs.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The name parts of a partition, e.g. `["orders", "17"]`.
///
/// Shared between clones: a partition is copied into the list, the target,
/// every record that grants it and every watcher's copy of that record, and
/// a copy only counts a reference. Reads like a `[String]`; compares, orders
/// and hashes like one; is written as a list of strings.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKeys(Arc<[String]>);

impl PartitionKeys {
    /// The keys as a slice.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl Deref for PartitionKeys {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl From<Vec<String>> for PartitionKeys {
    fn from(keys: Vec<String>) -> Self {
        PartitionKeys(keys.into())
    }
}

impl PartialEq<Vec<String>> for PartitionKeys {
    fn eq(&self, other: &Vec<String>) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<PartitionKeys> for Vec<String> {
    fn eq(&self, other: &PartitionKeys) -> bool {
        **self == *other.0
    }
}

impl fmt::Debug for PartitionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Serialize for PartitionKeys {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PartitionKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(deserializer).map(PartitionKeys::from)
    }
}

/// A unit of work that exactly one live worker owns at a time.
///
/// `keys` name it (a topic and a partition number, a tenant, …); `weight` is its
/// relative cost, used by the weighted strategies (`0` is allowed and means
/// "free").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Partition {
    /// The partition's name parts, e.g. `["orders", "17"]`.
    pub keys: PartitionKeys,
    /// Relative cost of the partition.
    #[serde(default = "default_weight")]
    pub weight: u64,
}

fn default_weight() -> u64 {
    1
}

impl Partition {
    /// A partition with the given keys and weight 1.
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Partition {
            keys: keys
                .into_iter()
                .map(Into::into)
                .collect::<Vec<String>>()
                .into(),
            weight: 1,
        }
    }

    /// The same partition with another weight.
    pub fn with_weight(mut self, weight: u64) -> Self {
        self.weight = weight;
        self
    }

    /// The stable ID of this partition: see [`PartitionId::of_keys`].
    pub fn id(&self) -> PartitionId {
        PartitionId::of_keys(&self.keys, 0)
    }

    /// The keys joined with `.`, the form used in NATS subjects.
    pub fn subject_key(&self) -> String {
        self.keys.join(".")
    }

    /// The keys joined with `-`, a readable name for logs (`orders-17`).
    pub fn name(&self) -> String {
        self.keys.join("-")
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A 64-bit partition ID derived from the keys. **Part of the wire contract.**
///
/// Derivation (identical to the Go original's `HashIDSeed`): `h = xxh3_64(keys[0],
/// seed)`, then for every further key `h = xxh3_64(key, seed = h)`; the bytes
/// hashed are the UTF-8 bytes of each key, with no separator or length prefix. An
/// empty key list hashes to `xxh3_64("", seed)`. Seed 0 is the unseeded XXH3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionId(pub u64);

impl PartitionId {
    /// Hashes `keys` by chaining as documented on the type.
    pub fn of_keys<S: AsRef<str>>(keys: &[S], seed: u64) -> Self {
        let mut iter = keys.iter();
        let mut h = match iter.next() {
            Some(first) => xxh3_64_with_seed(first.as_ref().as_bytes(), seed),
            None => xxh3_64_with_seed(b"", seed),
        };
        for key in iter {
            h = xxh3_64_with_seed(key.as_ref().as_bytes(), h);
        }
        PartitionId(h)
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_chained_xxh3() {
        // Golden values: xxh3_64("") is the canonical XXH3 empty hash.
        assert_eq!(PartitionId::of_keys::<&str>(&[], 0).0, 0x2d06800538d394c2);
        let one = PartitionId::of_keys(&["abc"], 42);
        assert_eq!(one.0, 0xd8438def21bbdcc3);
        let two = PartitionId::of_keys(&["topic", "p-1"], 0);
        let manual = xxh3_64_with_seed(b"p-1", xxh3_64_with_seed(b"topic", 0));
        assert_eq!(two.0, manual);
        // Chaining is not joining.
        assert_ne!(two, PartitionId::of_keys(&["topicp-1"], 0));
    }

    #[test]
    fn names() {
        let p = Partition::new(["orders", "7"]).with_weight(3);
        assert_eq!(p.subject_key(), "orders.7");
        assert_eq!(p.name(), "orders-7");
        assert_eq!(p.weight, 3);
    }

    #[test]
    fn keys_are_written_as_a_list_of_strings() {
        let p = Partition::new(["orders", "7"]);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"keys":["orders","7"],"weight":1}"#);
        let back: Partition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.keys, vec!["orders".to_string(), "7".to_string()]);
        assert!(Partition::new(["a", "b"]).keys < Partition::new(["a", "c"]).keys);
    }
}
