//! Where each key lives: the names rill gives its Redis keys, and, on a
//! Cluster, which hash slot each lands in.
//!
//! A stream's scripts touch its own keys and a few shared ones (the name
//! index, the generations set), and a live reader reads many streams in one
//! `XREAD`; on a Cluster every key one command touches must sit in one hash
//! slot. So on a Cluster the streams are split into [`CLUSTER_PARTITIONS`]
//! partitions by a hash of the name; each partition has a hash tag of its
//! own, chosen so the partitions' slots are spread evenly over the slot
//! range (and so over the shards), and its own index, generations set and
//! removals stream. A stream's keys and its partition's shared keys share
//! the partition's slot, so every script stays one atomic step, and one
//! reader per partition follows all of its streams with one `XREAD`.
//!
//! On one server (and behind Sentinel) there is one partition, and the keys
//! keep the names earlier versions of rill gave them (`P{name}:log`,
//! `Pindex`), so a running deployment upgrades in place.

use crate::ids::StreamName;

/// Partitions of a Cluster deployment. Each is one hash slot, so a Cluster
/// spreads rill's streams over at most this many slots; 16 spreads them
/// over up to 16 shards, and evenly over the usual 3 to 6.
pub const CLUSTER_PARTITIONS: usize = 16;

/// Slots in a Redis Cluster.
const SLOTS: usize = 16384;

/// The key names of one deployment.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
    /// The hash tag of each partition; empty on one server.
    tags: Vec<String>,
}

impl Layout {
    /// One partition, keys named as in earlier versions.
    pub fn single(prefix: &str) -> Layout {
        Layout {
            prefix: prefix.to_owned(),
            tags: Vec::new(),
        }
    }

    /// `n` partitions, each with a hash tag whose slot lies in the `k`-th
    /// `n`-th of the slot range.
    pub fn partitioned(prefix: &str, n: usize) -> Layout {
        let n = n.clamp(1, SLOTS);
        let tags = (0..n)
            .map(|k| {
                (0u64..)
                    .map(|i| format!("{k}.{i}"))
                    .find(|t| slot_of(t.as_bytes()) as usize * n / SLOTS == k)
                    .unwrap_or_default()
            })
            .collect();
        Layout {
            prefix: prefix.to_owned(),
            tags,
        }
    }

    /// How many partitions there are.
    pub fn partitions(&self) -> usize {
        self.tags.len().max(1)
    }

    /// Whether keys are laid out for a Cluster.
    pub fn is_partitioned(&self) -> bool {
        !self.tags.is_empty()
    }

    /// The partition a stream belongs to.
    pub fn partition_of(&self, name: &StreamName) -> usize {
        if self.tags.is_empty() {
            return 0;
        }
        (fnv(name.as_str().as_bytes()) % self.tags.len() as u64) as usize
    }

    /// The key of one part (`log`, `meta`, ...) of a stream.
    pub fn key(&self, name: &StreamName, part: &str) -> String {
        match self.tags.get(self.partition_of(name)) {
            Some(tag) => format!("{}{{{tag}}}:{name}:{part}", self.prefix),
            None => format!("{}{{{name}}}:{part}", self.prefix),
        }
    }

    /// A shared key (`index`, `generations`, `removed`) of partition `p`.
    pub fn shared(&self, p: usize, what: &str) -> String {
        match self.tags.get(p) {
            Some(tag) => format!("{}{{{tag}}}:{what}", self.prefix),
            None => format!("{}{what}", self.prefix),
        }
    }

    /// The shared key `what` of the partition `name` belongs to.
    pub fn shared_of(&self, name: &StreamName, what: &str) -> String {
        self.shared(self.partition_of(name), what)
    }

    /// The hash slot of partition `p` (on one server, of its index key).
    pub fn slot(&self, p: usize) -> u16 {
        slot_of(self.shared(p, "index").as_bytes())
    }

    /// The key of an idempotency claim in `scope`.
    pub fn claim(&self, scope: &str, key: &str) -> String {
        format!("{}claim:{{{scope}}}:{key}", self.prefix)
    }
}

/// The Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag, or of the
/// whole key when it has none, modulo 16384.
pub fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// FNV-1a: a hash of stream names that is the same on every node and in
/// every version (unlike the standard library's).
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> StreamName {
        StreamName::new(s.to_owned()).expect("name")
    }

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"bar"), 5061);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_ne!(slot_of(b"foo{}{bar}"), slot_of(b"bar"));
    }

    #[test]
    fn single_keeps_the_old_names() {
        let l = Layout::single("rill:");
        assert_eq!(l.key(&name("chat"), "log"), "rill:{chat}:log");
        assert_eq!(l.shared(0, "index"), "rill:index");
        assert_eq!(l.partitions(), 1);
    }

    #[test]
    fn a_stream_and_its_partition_share_a_slot() {
        let l = Layout::partitioned("rill:", CLUSTER_PARTITIONS);
        for s in ["a", "chat", "gen-0123", "x.y", "_rill"] {
            let n = name(s);
            let p = l.partition_of(&n);
            let slot = l.slot(p);
            for part in ["log", "meta", "idem", "lease"] {
                assert_eq!(slot_of(l.key(&n, part).as_bytes()), slot, "{s} {part}");
            }
            for shared in ["index", "generations", "removed"] {
                assert_eq!(slot_of(l.shared_of(&n, shared).as_bytes()), slot);
            }
        }
    }

    #[test]
    fn partitions_spread_over_three_shards() {
        let l = Layout::partitioned("rill:", CLUSTER_PARTITIONS);
        // The slot ranges `redis-cli --cluster create` gives three masters.
        let mut per_shard = [0; 3];
        for p in 0..l.partitions() {
            let slot = l.slot(p) as usize;
            assert_eq!(slot * CLUSTER_PARTITIONS / SLOTS, p);
            per_shard[match slot {
                0..=5460 => 0,
                5461..=10922 => 1,
                _ => 2,
            }] += 1;
        }
        assert!(
            per_shard.iter().all(|&n| (5..=6).contains(&n)),
            "{per_shard:?}"
        );
    }
}
