//! iceberg tables kept across queries by metadata location.
//!
//! A metadata version never changes, so the iceberg table opened from it can serve every
//! later query that finds the same head: its object cache keeps the parsed manifest lists
//! and manifests, and planning a warm query parses nothing again. The head itself is
//! still read per query (a commit is visible to the next query); a new head is a new
//! entry. The Postgres endpoint shares one cache between all sessions.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// A bounded cache of iceberg tables by metadata location (oldest entries go first).
#[derive(Debug)]
pub struct TableCache {
    capacity: usize,
    inner: Mutex<(HashMap<String, iceberg::table::Table>, VecDeque<String>)>,
}

impl TableCache {
    /// A cache of at most `capacity` tables.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The table opened from `metadata_location`, or `open()`'s, kept for next time.
    pub fn get_or_open<E>(
        &self,
        metadata_location: &str,
        open: impl FnOnce() -> Result<iceberg::table::Table, E>,
    ) -> Result<iceberg::table::Table, E> {
        if let Some(t) = self
            .inner
            .lock()
            .ok()
            .and_then(|g| g.0.get(metadata_location).cloned())
        {
            return Ok(t);
        }
        let table = open()?;
        if let Ok(mut g) = self.inner.lock() {
            let (map, order) = &mut *g;
            if map
                .insert(metadata_location.to_string(), table.clone())
                .is_none()
            {
                order.push_back(metadata_location.to_string());
            }
            while map.len() > self.capacity {
                match order.pop_front() {
                    Some(old) => {
                        map.remove(&old);
                    }
                    None => break,
                }
            }
        }
        Ok(table)
    }

    /// Tables held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.0.len()).unwrap_or(0)
    }

    /// Whether no table is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
