//! The result of a read: a stretch of a segment file, for `sendfile` without copying.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Whole batches lying at `position..position + len` of a segment's `.log` file.
///
/// The region keeps the file open, so retention deleting the segment afterwards does not
/// break a send in progress. A truncation after the read may shorten the file: a sender
/// must treat a short `sendfile` at end of file as the end of the region.
#[derive(Debug, Clone)]
pub struct FileRegion {
    /// The segment's `.log` file.
    pub file: Arc<File>,
    /// Byte position of the first batch.
    pub position: u64,
    /// Length in bytes.
    pub len: u64,
    /// Base offset of the first batch in the region.
    pub first_offset: u64,
}

impl FileRegion {
    /// Copies the region into memory (for tests, replication, and clients of the crate
    /// that cannot splice).
    pub fn read_to_vec(&self) -> std::io::Result<Vec<u8>> {
        let len = usize::try_from(self.len)
            .map_err(|_| std::io::Error::other("region larger than memory"))?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(buf)
    }
}
