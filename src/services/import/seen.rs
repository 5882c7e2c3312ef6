//! The keys an import has seen (lower-cased usernames, passport values) and the line of each
//! one's first occurrence, in memory that does not grow with the input's size.
//!
//! An exact in-memory map costs tens of bytes per key: about a gigabyte for ten million
//! users with an email each. Here every key goes, with its line, to an anonymous temporary
//! file, partitioned by hash into blocks; memory holds a Bloom filter over the keys
//! (32 MiB), one write buffer per partition and the offsets of each partition's blocks. A key
//! the filter has never seen is new without touching the file (almost every key); for the
//! rest (true duplicates and the filter's false positives) only the key's own partition,
//! about 1/1024 of the file, is read.
//!
//! The filter's false-positive rate stays below 0.03 % up to 20 million keys (7 hash
//! functions over 2^28 bits), so even at that size the file is read for about one key in
//! three thousand.

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::FileExt;

use crate::error::{Error, Result};

/// Bits of the Bloom filter (32 MiB).
const FILTER_BITS: u64 = 1 << 28;
/// Hash functions of the filter.
const FILTER_HASHES: u64 = 7;
/// Partitions of the spill file.
const PARTITIONS: usize = 1024;
/// A partition's buffer is written out as one block when it reaches this size.
const BLOCK_BYTES: usize = 4096;

/// Keys seen so far and the line where each first appeared.
pub(super) struct Seen {
    filter: Vec<u64>,
    file: Option<File>,
    file_len: u64,
    buffers: Vec<Vec<u8>>,
    /// Per partition, the (offset, length) of its blocks in the file.
    blocks: Vec<Vec<(u64, u32)>>,
}

impl Seen {
    pub(super) fn new() -> Self {
        Self {
            // Zeroed memory from the allocator: pages are only resident once a bit is set.
            filter: vec![0; (FILTER_BITS / 64) as usize],
            file: None,
            file_len: 0,
            buffers: (0..PARTITIONS).map(|_| Vec::new()).collect(),
            blocks: vec![Vec::new(); PARTITIONS],
        }
    }

    /// Records `key` at `line` if it is new; returns the line of its first occurrence if
    /// it was seen before (and then records nothing).
    pub(super) fn first_line(&mut self, key: &str, line: usize) -> Result<Option<usize>> {
        let (h1, h2) = hashes(key);
        let partition = (h2 >> 32) as usize % PARTITIONS;
        let mut maybe_seen = true;
        for i in 0..FILTER_HASHES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % FILTER_BITS;
            let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
            if self.filter[word] & mask == 0 {
                maybe_seen = false;
                self.filter[word] |= mask;
            }
        }
        if maybe_seen && let Some(first) = self.find(partition, key)? {
            return Ok(Some(first));
        }
        let buffer = &mut self.buffers[partition];
        buffer.extend_from_slice(&(line as u64).to_le_bytes());
        buffer.extend_from_slice(&(key.len() as u32).to_le_bytes());
        buffer.extend_from_slice(key.as_bytes());
        if buffer.len() >= BLOCK_BYTES {
            self.flush(partition)?;
        }
        Ok(None)
    }

    fn flush(&mut self, partition: usize) -> Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(tempfile::tempfile().map_err(spill_error)?),
        };
        let buffer = &mut self.buffers[partition];
        file.write_all(buffer).map_err(spill_error)?;
        self.blocks[partition].push((self.file_len, buffer.len() as u32));
        self.file_len += buffer.len() as u64;
        buffer.clear();
        Ok(())
    }

    /// The line of `key` in its partition: the blocks on disk, then the unwritten buffer.
    fn find(&self, partition: usize, key: &str) -> Result<Option<usize>> {
        let mut block = Vec::new();
        for &(offset, len) in &self.blocks[partition] {
            block.resize(len as usize, 0);
            if let Some(file) = &self.file {
                file.read_exact_at(&mut block, offset).map_err(spill_error)?;
            }
            if let Some(line) = scan(&block, key) {
                return Ok(Some(line));
            }
        }
        Ok(scan(&self.buffers[partition], key))
    }
}

/// Finds `key` among the records (line, length, bytes) of one block.
fn scan(mut records: &[u8], key: &str) -> Option<usize> {
    while records.len() >= 12 {
        let line = u64::from_le_bytes(records[..8].try_into().ok()?);
        let len = u32::from_le_bytes(records[8..12].try_into().ok()?) as usize;
        let stored = records.get(12..12 + len)?;
        if stored == key.as_bytes() {
            return Some(line as usize);
        }
        records = &records[12 + len..];
    }
    None
}

/// Two independent 64-bit hashes of `key` (double hashing for the filter's positions).
fn hashes(key: &str) -> (u64, u64) {
    let hash = |seed: u8| {
        let mut h = DefaultHasher::new();
        seed.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    // An odd step visits distinct positions of the power-of-two filter.
    (hash(1), hash(2) | 1)
}

fn spill_error(e: std::io::Error) -> Error {
    Error::Internal(format!("cannot write the import's temporary file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_seen_again_reports_its_first_line_across_flushed_blocks() {
        let mut seen = Seen::new();
        for i in 0..50_000 {
            assert_eq!(seen.first_line(&format!("u:user{i}"), i + 2).expect("new"), None);
        }
        assert_eq!(seen.first_line("u:user7", 90_000).expect("dup"), Some(9));
        assert_eq!(seen.first_line("u:user49999", 90_001).expect("dup"), Some(50_001));
        assert_eq!(seen.first_line("p:user7", 90_002).expect("other kind"), None);
    }
}
