//! The result of a read: a stretch of a segment file, for `sendfile` without copying.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Whole batches lying at `position..position + len` of a segment's `.log` file.
///
/// The region keeps the file open, so retention deleting the segment afterwards does not
/// break a send in progress. While any region read from a segment is alive, the segment
/// cannot be truncated ([`crate::Log::truncate_to`] answers
/// [`crate::StorageError::RegionsInUse`]), so the bytes a region covers stay in the file:
/// a sender may map them.
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
    /// Held while the region lives: the segment refuses truncation meanwhile (its
    /// reader count is the strong count of this `Arc`; nothing reads the value).
    #[allow(dead_code)]
    pin: Option<Arc<()>>,
}

impl FileRegion {
    /// A region of a file that no segment tracks (tests, tools).
    pub fn new(file: Arc<File>, position: u64, len: u64, first_offset: u64) -> Self {
        Self {
            file,
            position,
            len,
            first_offset,
            pin: None,
        }
    }

    /// A region of a segment, pinning it against truncation while it lives.
    pub(crate) fn pinned(
        file: Arc<File>,
        position: u64,
        len: u64,
        first_offset: u64,
        pin: &Arc<()>,
    ) -> Self {
        Self {
            pin: Some(Arc::clone(pin)),
            ..Self::new(file, position, len, first_offset)
        }
    }

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
