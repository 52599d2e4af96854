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
/// a copy only counts a reference. The partition's [`PartitionId`] is
/// computed once, when the keys are made, and carried along: the leader and
/// every worker look partitions up by ID a million times over at a million
/// partitions. Reads like a `[String]`; compares, orders and hashes like one
/// (equality and hashing use the ID first, which the keys determine); is
/// written as a list of strings.
#[derive(Clone)]
pub struct PartitionKeys {
    id: PartitionId,
    keys: Arc<[String]>,
}

impl PartialEq for PartitionKeys {
    fn eq(&self, other: &Self) -> bool {
        // Equal keys have equal IDs; clones share their keys.
        self.id == other.id && (Arc::ptr_eq(&self.keys, &other.keys) || self.keys == other.keys)
    }
}

impl Eq for PartitionKeys {}

impl PartialOrd for PartitionKeys {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PartitionKeys {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.keys, &other.keys) {
            return std::cmp::Ordering::Equal;
        }
        self.keys.cmp(&other.keys)
    }
}

impl std::hash::Hash for PartitionKeys {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with `eq`: equal keys have equal IDs.
        self.id.hash(state);
    }
}

impl PartitionKeys {
    /// The keys as a slice.
    pub fn as_slice(&self) -> &[String] {
        &self.keys
    }

    /// The partition ID these keys hash to (see [`PartitionId::of_keys`]).
    pub fn id(&self) -> PartitionId {
        self.id
    }
}

impl PartitionKeys {
    /// The first 16 bytes of an order-preserving encoding of the keys: each
    /// level's bytes with 0x00 written as 0x00 0xFF, then 0x00 0x00 ending
    /// the level; zero-padded. The encodings compare as the keys do, and a
    /// padded prefix of smaller keys is never greater, so this orders keys
    /// wherever it differs and leaves only ties to a full comparison.
    fn order_prefix(&self) -> u128 {
        let mut prefix = [0u8; 16];
        let mut at = 0;
        let mut push = |byte: u8| {
            if let Some(slot) = prefix.get_mut(at) {
                *slot = byte;
                at += 1;
            }
        };
        for level in self.keys.iter() {
            for &byte in level.as_bytes().iter().take(16) {
                push(byte);
                if byte == 0 {
                    push(0xFF);
                }
            }
            push(0);
            push(0);
        }
        u128::from_be_bytes(prefix)
    }
}

/// The positions of `keys` in ascending key order (what sorting them by
/// [`Ord`] gives, ties kept in input order), computed with one comparison of
/// 16-byte prefixes per step: a million keys sort in tens of milliseconds
/// instead of seconds of comparisons that chase pointers to strings.
pub fn order_by_keys<'a, I>(keys: I) -> Vec<usize>
where
    I: IntoIterator<Item = &'a PartitionKeys>,
{
    let keys: Vec<&PartitionKeys> = keys.into_iter().collect();
    let mut order: Vec<(u128, usize)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.order_prefix(), i))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| keys[a.1].cmp(keys[b.1]))
            .then(a.1.cmp(&b.1))
    });
    order.into_iter().map(|(_, i)| i).collect()
}

impl Deref for PartitionKeys {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.keys
    }
}

impl From<Vec<String>> for PartitionKeys {
    fn from(keys: Vec<String>) -> Self {
        PartitionKeys {
            id: PartitionId::of_keys(&keys, 0),
            keys: keys.into(),
        }
    }
}

impl PartialEq<Vec<String>> for PartitionKeys {
    fn eq(&self, other: &Vec<String>) -> bool {
        *self.keys == **other
    }
}

impl PartialEq<PartitionKeys> for Vec<String> {
    fn eq(&self, other: &PartitionKeys) -> bool {
        **self == *other.keys
    }
}

impl fmt::Debug for PartitionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter()).finish()
    }
}

impl Serialize for PartitionKeys {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.keys.serialize(serializer)
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

    /// The stable ID of this partition: see [`PartitionId::of_keys`]
    /// (computed once, with the keys).
    pub fn id(&self) -> PartitionId {
        self.keys.id()
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
        assert_eq!(back.id(), PartitionId::of_keys(&["orders", "7"], 0));
    }

    #[test]
    fn the_prefix_order_is_the_key_order() {
        let names: &[&[&str]] = &[
            &[],
            &[""],
            &["", ""],
            &["\0"],
            &["a"],
            &["a", ""],
            &["a", "b"],
            &["a\0"],
            &["a\0", "b"],
            &["a\u{1}"],
            &["ab"],
            &["topic", "p-1"],
            &["topic", "p-10"],
            &["topic", "p-2"],
            &["a-very-long-topic-name", "p-1"],
            &["a-very-long-topic-name", "p-0"],
            &["a-very-long-topic-name"],
            &["a-very-long-topic-name", "p-0", "x"],
            &["\u{ff}"],
            &["é"],
        ];
        let keys: Vec<PartitionKeys> = names
            .iter()
            .map(|n| PartitionKeys::from(n.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
            .collect();
        let mut expected: Vec<usize> = (0..keys.len()).collect();
        expected.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
        assert_eq!(order_by_keys(&keys), expected);
        for a in &keys {
            for b in &keys {
                if a.order_prefix() < b.order_prefix() {
                    assert!(a < b, "{a:?} before {b:?} by prefix only");
                }
            }
        }
    }

    #[test]
    fn keys_compare_by_content_whatever_their_origin() {
        let a = Partition::new(["orders", "7"]);
        let same = Partition::new(["orders", "7"]);
        let other = Partition::new(["orders", "8"]);
        assert_eq!(a.keys, same.keys);
        assert_eq!(a.keys.cmp(&same.keys), std::cmp::Ordering::Equal);
        assert_ne!(a.keys, other.keys);
        assert!(a.keys < other.keys);
        assert_eq!(a.clone().keys, a.keys);
        let hash = |k: &PartitionKeys| {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(k)
        };
        assert_eq!(hash(&a.keys), hash(&same.keys));
    }
}
