//! A session's message log, for snapshots.
//!
//! Owns the entries (oldest first) and their memory cost. The hub appends
//! and evicts under its own lock, at commit; a snapshot reads it later,
//! under this log's own (leaf) lock only, taking the entries up to the
//! sequence it was registered at: the log's lock is never held while
//! another is taken, so it cannot deadlock and holds up only the one
//! session's commit for as long as copying its entries' handles takes.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::session::LogEntry;

#[derive(Debug, Default)]
pub struct Log {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    entries: VecDeque<LogEntry>,
    cost: usize,
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Nothing panics while holding this lock; keep serving if it did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `entries`, then drops the oldest beyond `limit` entries;
    /// returns the change in cost (bytes added, bytes freed).
    pub fn append(&self, entries: Vec<LogEntry>, limit: usize) -> (usize, usize) {
        let mut log = self.lock();
        let mut added = 0;
        for e in entries {
            added += e.cost();
            log.entries.push_back(e);
        }
        log.cost += added;
        let mut freed = 0;
        while log.entries.len() > limit {
            match log.entries.pop_front() {
                Some(e) => freed += e.cost(),
                None => break,
            }
        }
        log.cost -= freed;
        (added, freed)
    }

    /// Drops the oldest entries of bus sequence `seq` (those that are
    /// still there); returns the bytes freed.
    pub fn evict(&self, seq: u64) -> usize {
        let mut log = self.lock();
        let mut freed = 0;
        while log.entries.front().is_some_and(|e| e.seq == seq) {
            if let Some(e) = log.entries.pop_front() {
                freed += e.cost();
            }
        }
        log.cost -= freed;
        freed
    }

    /// The entries of sequence at most `cut`, oldest first.
    pub fn up_to(&self, cut: u64) -> Vec<LogEntry> {
        let log = self.lock();
        let end = log.entries.partition_point(|e| e.seq <= cut);
        log.entries.range(..end).cloned().collect()
    }

    /// Every entry, oldest first.
    pub fn all(&self) -> Vec<LogEntry> {
        self.up_to(u64::MAX)
    }

    /// The sequence of the oldest entry.
    pub fn front_seq(&self) -> Option<u64> {
        self.lock().entries.front().map(|e| e.seq)
    }

    /// What the entries take.
    pub fn cost(&self) -> usize {
        self.lock().cost
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the entries (restoring a checkpoint); returns their cost.
    pub fn fill(&self, entries: Vec<LogEntry>) -> usize {
        let mut log = self.lock();
        log.cost = entries.iter().map(LogEntry::cost).sum();
        log.entries = entries.into();
        log.cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    fn entry(seq: u64, text: &str) -> LogEntry {
        LogEntry {
            seq,
            agent: Utf8Bytes::from(text.to_owned()),
            customer: None,
        }
    }

    #[test]
    fn bounded_by_count_evicted_by_sequence_read_up_to_a_cut() {
        let log = Log::default();
        let (added, freed) = log.append(vec![entry(1, "a"), entry(1, "b"), entry(2, "c")], 10);
        assert_eq!(freed, 0);
        assert_eq!(log.cost(), added);
        assert_eq!(log.up_to(1).len(), 2);
        assert_eq!(log.up_to(0).len(), 0);
        let freed = log.evict(1);
        assert_eq!(freed, entry(1, "a").cost() + entry(1, "b").cost());
        assert_eq!(log.evict(1), 0, "nothing of sequence 1 is left");
        assert_eq!(log.all(), vec![entry(2, "c")]);
        let (_, freed) = log.append(vec![entry(3, "d"), entry(4, "e")], 2);
        assert_eq!(freed, entry(2, "c").cost());
        assert_eq!(log.len(), 2);
        assert_eq!(log.cost(), entry(3, "d").cost() + entry(4, "e").cost());
    }
}
