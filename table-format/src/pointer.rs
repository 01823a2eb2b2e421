//! External metadata pointers: for tables whose current metadata is recorded by a catalog
//! (the Iceberg SQL catalog's `metadata_location` column) rather than by the Hadoop
//! layout's `v{N}.metadata.json` sequence.
//!
//! A commit to such a table writes its metadata to a fresh, uniquely named file
//! (`metadata/{NNNNN}-{uuid}.metadata.json`, the naming pyiceberg and Java use) and then
//! swaps the pointer atomically from the base it was built on. The commit protocol of
//! [`crate::commit`] is unchanged: a swap that found another pointer is a lost race, and a
//! swap without a clear answer is settled by reading the pointer back.

use std::fmt;

use async_trait::async_trait;

use crate::error::Result;

/// The record of a table's current metadata file, swapped atomically.
#[async_trait]
pub trait MetadataPointer: Send + Sync + fmt::Debug {
    /// The current metadata location, or None if the table is not (or no longer) there.
    async fn current(&self) -> Result<Option<String>>;

    /// Move the pointer from `expected` to `new`, atomically. `Ok(true)`: swapped.
    /// `Ok(false)`: the pointer was not `expected` (another writer won). An error that
    /// [`crate::Error::is_retryable`] means the swap may or may not have happened.
    async fn swap(&self, expected: &str, new: &str) -> Result<bool>;
}

/// The version number in a `{NNNNN}-{uuid}.metadata.json` name (0 when there is none).
pub fn sequence_of(location: &str) -> u64 {
    location
        .rsplit('/')
        .next()
        .and_then(|name| name.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A fresh metadata file name for version `n` of a pointer table.
pub fn new_metadata_location(table_location: &str, n: u64) -> String {
    format!(
        "{table_location}/metadata/{n:05}-{}.metadata.json",
        uuid::Uuid::new_v4()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_come_from_names() {
        assert_eq!(
            sequence_of("file:///w/t/metadata/00012-ab-cd.metadata.json"),
            12
        );
        assert_eq!(sequence_of("file:///w/t/metadata/v3.metadata.json"), 0);
        let l = new_metadata_location("s3://b/t", 7);
        assert!(l.starts_with("s3://b/t/metadata/00007-") && l.ends_with(".metadata.json"));
        assert_eq!(sequence_of(&l), 7);
    }
}
