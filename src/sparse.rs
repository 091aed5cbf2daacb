//! Giving back the room a map grew to during a burst.
//!
//! A hash map never shrinks on its own: after 100,000 holds were forgotten
//! the holds map still had room for 100,000, and that table is one of the
//! largest single allocations the gateway makes (its slots are stored
//! inline). Maps that are swept are shrunk when they have become mostly
//! empty; the margin keeps a map whose size merely wobbles from being
//! rebuilt over and over.

use dashmap::DashMap;
use std::hash::Hash;

/// Below this many slots a map is left alone: it is small either way.
const FLOOR: usize = 4096;

/// Shrinks `map` to its entries when at most a quarter of its room is used.
/// Returns whether it did. Takes every shard's lock in turn, so callers are
/// sweepers, never request paths.
pub fn shrink<K: Eq + Hash, V>(map: &DashMap<K, V>) -> bool {
    let room = map.capacity();
    if room < FLOOR || room / 4 < map.len() {
        return false;
    }
    map.shrink_to_fit();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mostly_empty_map_gives_its_room_back_and_a_busy_one_keeps_it() {
        let map: DashMap<u32, [u8; 64]> = DashMap::new();
        for i in 0..50_000 {
            map.insert(i, [0; 64]);
        }
        let grown = map.capacity();
        assert!(!shrink(&map), "full: nothing to give back");
        map.retain(|k, _| *k < 20_000);
        assert!(!shrink(&map), "40% used is not mostly empty");
        map.retain(|k, _| *k < 1_000);
        assert!(shrink(&map));
        assert!(map.capacity() < grown / 8, "{} of {grown}", map.capacity());
        assert_eq!(map.len(), 1_000, "no entry is lost");
        assert!((0..1_000).all(|k| map.contains_key(&k)));
    }

    #[test]
    fn small_maps_are_left_alone() {
        let map: DashMap<u32, u32> = DashMap::new();
        for i in 0..1_000 {
            map.insert(i, i);
        }
        map.clear();
        assert!(!shrink(&map));
    }
}
