//! The storage engine's one door to the file system for everything that changes what
//! is on disk: opening files, writes, length changes, fsync (of files, maps and
//! directories), renames and removals. Reads go straight to the files.
//!
//! [`Io::real`] calls the OS. Tests put a [`FileIo`] of their own behind the same
//! handle to make any of these fail (EIO, ENOSPC, short writes, a failed fsync or
//! rename) or to simulate a power loss that keeps only what was synced: see
//! `fault::FaultIo` (feature `fault-injection`, or this crate's own tests).
//!
//! The handle travels with the [`crate::Flusher`], which every log already takes, so
//! a broker that hands its logs a faulty flusher has every write path under test.

use std::fmt::Debug;
use std::fs::File;
use std::io::IoSlice;
use std::path::Path;
use std::sync::Arc;

use memmap2::MmapMut;

use crate::error::{IoContext, Result};

/// How [`FileIo::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only (a directory, to sync it through [`crate::Flusher`]).
    Read,
    /// Read and write; created if missing, kept as it is if present.
    ReadWrite,
    /// Read, and write at the end only (a segment's `.log`); created if `create`.
    Append {
        /// Create the file if missing.
        create: bool,
    },
    /// Write only, the file must exist.
    WriteExisting,
    /// Write only; created, or emptied if present.
    CreateTruncate,
}

/// The operations that change files. Every method takes the path too, so a test
/// implementation can decide by name what to fail and what a power loss keeps.
pub trait FileIo: Debug + Send + Sync + 'static {
    /// Opens `path`.
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<File>;
    /// One `writev` at the file's position (it may write less than asked).
    fn write_vectored(
        &self,
        path: &Path,
        file: &File,
        bufs: &[IoSlice<'_>],
    ) -> std::io::Result<usize>;
    /// Sets the file's length.
    fn set_len(&self, path: &Path, file: &File, len: u64) -> std::io::Result<()>;
    /// `fdatasync` (`all`: `fsync`, metadata too) of a file or, with `all`, a directory
    /// opened with [`OpenMode::Read`]. No path: the group-commit thread knows only the
    /// file (a test implementation finds the path by inode).
    fn sync(&self, file: &File, all: bool) -> std::io::Result<()>;
    /// `msync` of a writable map of `path`.
    fn sync_map(&self, path: &Path, map: &MmapMut) -> std::io::Result<()>;
    /// `fsync` of a directory, making the names in it durable.
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()>;
    /// Renames `from` to `to` (replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> std::io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()>;
}

/// The OS, with no faults.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealIo;

impl FileIo for RealIo {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<File> {
        let mut o = std::fs::OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true).create(true).truncate(false),
            OpenMode::Append { create } => o.read(true).append(true).create(create).truncate(false),
            OpenMode::WriteExisting => o.write(true),
            OpenMode::CreateTruncate => o.write(true).create(true).truncate(true),
        };
        o.open(path)
    }

    fn write_vectored(
        &self,
        _: &Path,
        mut file: &File,
        bufs: &[IoSlice<'_>],
    ) -> std::io::Result<usize> {
        std::io::Write::write_vectored(&mut file, bufs)
    }

    fn set_len(&self, _: &Path, file: &File, len: u64) -> std::io::Result<()> {
        file.set_len(len)
    }

    fn sync(&self, file: &File, all: bool) -> std::io::Result<()> {
        if all {
            file.sync_all()
        } else {
            file.sync_data()
        }
    }

    fn sync_map(&self, _: &Path, map: &MmapMut) -> std::io::Result<()> {
        map.flush()
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        File::open(dir).and_then(|d| d.sync_all())
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path)
    }
}

/// Suffix of the temporary files [`Io::write_durably`] leaves after a crash; `~`
/// appears in no topic or segment name, so a leftover is never mistaken for one.
pub(crate) const TMP_SUFFIX: &str = "~tmp";

/// A cheap handle to the [`FileIo`] in use.
#[derive(Debug, Clone)]
pub struct Io(Arc<dyn FileIo>);

impl Default for Io {
    fn default() -> Self {
        Self::real()
    }
}

impl std::ops::Deref for Io {
    type Target = dyn FileIo;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl Io {
    /// The OS.
    pub fn real() -> Self {
        Self(Arc::new(RealIo))
    }

    /// `io` behind the handle (a test's fault injector).
    pub fn new(io: Arc<dyn FileIo>) -> Self {
        Self(io)
    }

    /// Replaces `dir/name` with `contents` so that a crash leaves the old file or the
    /// new one, never a torn one: temp file, fsync, rename, directory fsync.
    pub fn write_durably(&self, dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
        self.replace_file(dir, name, contents)?;
        self.sync_dir_at(dir)
    }

    /// [`Io::write_durably`] without its last step: the new contents are synced and
    /// renamed into place, so from here on anyone reading the file (a restart included)
    /// sees them, but only [`Io::sync_dir_at`] makes the rename survive a crash. For
    /// callers whose state must follow the file once it is renamed, even if that last
    /// step fails.
    pub fn replace_file(&self, dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
        let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
        let file = self
            .open(&tmp, OpenMode::CreateTruncate)
            .io_context("create", &tmp)?;
        self.write_all_vectored(&tmp, &file, &mut [IoSlice::new(contents)])
            .and_then(|()| self.sync(&file, true))
            .io_context("write", &tmp)?;
        let path = dir.join(name);
        self.rename(&tmp, &path).io_context("rename", &path)
    }

    /// Makes file creations, renames and deletions in `dir` durable.
    pub fn sync_dir_at(&self, dir: &Path) -> Result<()> {
        self.sync_dir(dir).io_context("sync log dir", dir)
    }

    /// Writes every slice, looping over short writes.
    pub fn write_all_vectored(
        &self,
        path: &Path,
        file: &File,
        mut slices: &mut [IoSlice<'_>],
    ) -> std::io::Result<()> {
        IoSlice::advance_slices(&mut slices, 0);
        while !slices.is_empty() {
            match self.write_vectored(path, file, slices) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
