//! A bounded in-memory cache of tiles in front of SQLite, shared by every tileset of a catalog.
//!
//! Why: a tile read from SQLite costs a shared lock, a `stat` of the journal, the B-tree walk and
//! an unlock (about 4 syscalls); under `wrk` on the project's 2-core machine `sqlite3_step` was
//! 29% of the server's CPU samples (`perf record`, 2026-11-25), and the HTTP work around it is
//! cheaper than that. martin, the peer we measure against, keeps a tile cache (512 MB by
//! default) for the same reason.
//!
//! Entries are keyed by the tileset's generation (a new one each time its file is opened again)
//! and the tile, so a reloaded file never serves old tiles: its old entries just age out. A file
//! edited in place is reopened at the catalog's next refresh (default every second); until then
//! a cached tile may be the one from before the edit. Eviction is first-in first-out per shard,
//! by bytes; tiles larger than an eighth of a shard's budget are not cached.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

use crate::format::TileFormat;
use crate::scheme::TileId;

/// A tile as served: the stored bytes with the facts the HTTP layer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedTile {
    /// The stored BLOB.
    pub data: Bytes,
    /// Its format.
    pub format: TileFormat,
    /// Whether `data` is gzip'd.
    pub gzip: bool,
    /// XXH3-64 of `data`: the base of the ETags.
    pub hash: u64,
}

impl CachedTile {
    /// Wraps a tile read from a file, hashing its bytes.
    pub fn new(t: crate::reader::Tile) -> CachedTile {
        CachedTile {
            hash: xxhash_rust::xxh3::xxh3_64(&t.data),
            data: t.data,
            format: t.format,
            gzip: t.gzip,
        }
    }
}

type Key = (u64, TileId);

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Key, CachedTile>,
    order: VecDeque<Key>,
    bytes: usize,
}

/// The cache. 16 shards, each behind its own mutex, so concurrent requests rarely wait.
#[derive(Debug)]
pub struct TileCache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
}

const SHARDS: usize = 16;
/// Per-entry overhead counted against the budget (key, map slot, queue slot, `Bytes` header).
const OVERHEAD: usize = 96;

impl TileCache {
    /// A cache holding about `bytes` of tile data (0: caches nothing).
    pub fn new(bytes: usize) -> TileCache {
        TileCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget: bytes / SHARDS,
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let (g, t) = key;
        let h = g
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(u64::from(t.x()).wrapping_mul(0xff51_afd7_ed55_8ccd))
            .wrapping_add(u64::from(t.y()).wrapping_mul(0xc4ce_b9fe_1a85_ec53))
            .wrapping_add(u64::from(t.z()));
        &self.shards[(h >> 32) as usize % SHARDS]
    }

    /// The cached tile of generation `generation`, if any.
    pub fn get(&self, generation: u64, id: TileId) -> Option<CachedTile> {
        let key = (generation, id);
        let shard = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        shard.map.get(&key).cloned()
    }

    /// Caches a tile, evicting the oldest entries of its shard past the budget.
    pub fn insert(&self, generation: u64, id: TileId, tile: CachedTile) {
        let cost = tile.data.len() + OVERHEAD;
        if cost > self.shard_budget / 8 {
            return;
        }
        let key = (generation, id);
        let mut shard = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        if shard.map.insert(key, tile).is_some() {
            return; // Another request cached it first; same bytes, already counted.
        }
        shard.order.push_back(key);
        shard.bytes += cost;
        while shard.bytes > self.shard_budget {
            let Some(old) = shard.order.pop_front() else {
                break;
            };
            if let Some(t) = shard.map.remove(&old) {
                shard.bytes -= t.data.len() + OVERHEAD;
            }
        }
    }

    /// Bytes held now (tile data plus the per-entry overhead), for logs and tests.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(n: usize) -> CachedTile {
        CachedTile {
            data: Bytes::from(vec![7u8; n]),
            format: TileFormat::Png,
            gzip: false,
            hash: n as u64,
        }
    }

    #[test]
    fn stays_within_budget_and_keys_by_generation() {
        let c = TileCache::new(SHARDS * 10_000);
        for x in 0..1000 {
            c.insert(1, TileId::new(10, x, 0).unwrap(), tile(500));
        }
        assert!(c.bytes() <= SHARDS * 10_000, "{}", c.bytes());
        let last = TileId::new(10, 999, 0).unwrap();
        assert_eq!(c.get(1, last), Some(tile(500)));
        assert_eq!(c.get(2, last), None, "another generation is another file");
        // Too big for the cache: not stored.
        c.insert(1, TileId::new(0, 0, 0).unwrap(), tile(5_000));
        assert_eq!(c.get(1, TileId::new(0, 0, 0).unwrap()), None);
        let off = TileCache::new(0);
        off.insert(1, last, tile(1));
        assert_eq!(off.get(1, last), None);
    }
}
