//! A [`FileIo`] for tests: the real file system, plus faults on demand and a simulated
//! power loss that keeps only what was synced.
//!
//! Faults: any operation on a path containing a given text fails with a given OS error
//! (EIO, ENOSPC, ...), once or until cleared; writes can be made short (half of what
//! was asked, which the write loop must finish).
//!
//! Power loss ([`FaultIo::power_loss`]): every file written through this seam goes back
//! to what its last sync made durable, optionally keeping a torn piece of what came
//! after (a prefix cut at a byte or page boundary, as a crash mid-writeback leaves);
//! files, directories and renames whose directory entry was never synced disappear, and
//! removals never synced are undone. Call it with every log closed or dropped: it
//! rewrites the files underneath.

use std::collections::HashMap;
use std::fs::File;
use std::io::IoSlice;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use memmap2::MmapMut;

use crate::io::{FileIo, OpenMode, RealIo};

/// The operations a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Opening a file for writing.
    Open,
    /// A write.
    Write,
    /// A length change.
    SetLen,
    /// `fsync`/`fdatasync` of a file or directory, or `msync` of a map.
    Sync,
    /// A rename.
    Rename,
    /// A removal.
    Remove,
}

/// What a power loss keeps of the bytes written after a file's last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Torn {
    /// Nothing.
    Nothing,
    /// A prefix of this many bytes (capped at what there is).
    Bytes(u64),
    /// A prefix of this many whole 4 KiB pages (capped at what there is).
    Pages(u64),
}

#[derive(Debug)]
struct Rule {
    op: Op,
    path_contains: String,
    exact: bool,
    errno: i32,
    once: bool,
    /// Matching calls let through before this rule fires.
    passes: u32,
}

/// One file's durable state.
#[derive(Debug, Clone)]
struct Tracked {
    /// Contents as of the last sync.
    durable: Vec<u8>,
    /// Whether its name is durable (it existed before, or its directory was synced since
    /// it was created or renamed here).
    entry_durable: bool,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    short_writes: Option<String>,
    files: HashMap<PathBuf, Tracked>,
    inodes: HashMap<(u64, u64), PathBuf>,
    /// Directories created here whose own entry is not yet durable.
    new_dirs: Vec<PathBuf>,
    /// Removals not yet made durable: the file as a power loss would bring it back.
    removed: Vec<(PathBuf, Tracked)>,
    /// Renames not yet made durable: (from, to, what `to` was before, whether the
    /// name `from` was durable).
    renamed: Vec<(PathBuf, PathBuf, Option<Tracked>, bool)>,
    syncs: u64,
    fired: u64,
}

/// The names in a directory when a sync of it starts.
#[derive(Debug, Default)]
struct Entries {
    files: Vec<PathBuf>,
    new_dirs: Vec<PathBuf>,
    removed: Vec<PathBuf>,
    renamed: Vec<PathBuf>,
}

/// The fault-injecting file system; see the module doc.
#[derive(Debug, Default)]
pub struct FaultIo {
    real: RealIo,
    state: Mutex<State>,
}

fn inode(file: &File) -> std::io::Result<(u64, u64)> {
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

impl FaultIo {
    /// A seam with no faults yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `op` on paths containing `path_contains` fail with OS error `errno` (e.g.
    /// `libc::EIO`, `libc::ENOSPC`) until [`FaultIo::clear`]; with `once`, only the next.
    pub fn fail(&self, op: Op, path_contains: &str, errno: i32, once: bool) {
        self.lock().rules.push(Rule {
            op,
            path_contains: path_contains.to_string(),
            exact: false,
            errno,
            once,
            passes: 0,
        });
    }

    /// As [`FaultIo::fail`] with `once`, after letting `passes` matching calls through
    /// (a failure in the middle of an operation: the second write of a short one, say).
    pub fn fail_after(&self, op: Op, path_contains: &str, errno: i32, passes: u32) {
        self.lock().rules.push(Rule {
            op,
            path_contains: path_contains.to_string(),
            exact: false,
            errno,
            once: true,
            passes,
        });
    }

    /// Faults injected so far (each failed call counts once).
    pub fn fired(&self) -> u64 {
        self.lock().fired
    }

    /// As [`FaultIo::fail`], for `path` itself only (a directory, not what is in it).
    pub fn fail_exact(&self, op: Op, path: &Path, errno: i32, once: bool) {
        self.lock().rules.push(Rule {
            op,
            path_contains: path.to_string_lossy().into_owned(),
            exact: true,
            errno,
            once,
            passes: 0,
        });
    }

    /// Makes writes to paths containing `path_contains` write half of what they are
    /// given (at least one byte).
    pub fn short_writes(&self, path_contains: &str) {
        self.lock().short_writes = Some(path_contains.to_string());
    }

    /// Removes every fault (the disk has space again, the device answers).
    pub fn clear(&self) {
        let mut s = self.lock();
        s.rules.clear();
        s.short_writes = None;
    }

    /// Syncs made through this seam so far (files, maps and directories).
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    fn check(&self, op: Op, path: &Path) -> std::io::Result<()> {
        let mut s = self.lock();
        let text = path.to_string_lossy();
        if let Some(i) = s.rules.iter().position(|r| {
            r.op == op
                && if r.exact {
                    text == r.path_contains.as_str()
                } else {
                    text.contains(&r.path_contains)
                }
        }) {
            if s.rules[i].passes > 0 {
                s.rules[i].passes -= 1;
                return Ok(());
            }
            let errno = s.rules[i].errno;
            if s.rules[i].once {
                s.rules.remove(i);
            }
            s.fired += 1;
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        Ok(())
    }

    /// Starts tracking `path` if it is not yet: what is on disk now counts as durable.
    fn track_existing(s: &mut State, path: &Path) {
        if !s.files.contains_key(path) && path.exists() {
            let durable = std::fs::read(path).unwrap_or_default();
            s.files.insert(
                path.to_path_buf(),
                Tracked {
                    durable,
                    entry_durable: true,
                },
            );
        }
    }

    /// Records `contents` (read before the sync started: bytes written while it ran
    /// are not covered by it) as `path`'s durable state.
    fn snapshot(&self, path: &Path, contents: Vec<u8>) {
        let mut s = self.lock();
        s.syncs += 1;
        if let Some(t) = s.files.get_mut(path) {
            t.durable = contents;
        }
    }

    /// What a directory sync starting now covers: the names in `dir` (files, new
    /// directories, removals and renames) as they are before it.
    fn entries_in(&self, dir: &Path) -> Entries {
        let s = self.lock();
        Entries {
            files: s
                .files
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .cloned()
                .collect(),
            new_dirs: s
                .new_dirs
                .iter()
                .filter(|d| d.parent() == Some(dir))
                .cloned()
                .collect(),
            removed: s
                .removed
                .iter()
                .filter(|(p, _)| p.parent() == Some(dir))
                .map(|(p, _)| p.clone())
                .collect(),
            renamed: s
                .renamed
                .iter()
                .filter(|r| r.1.parent() == Some(dir))
                .map(|r| r.1.clone())
                .collect(),
        }
    }

    fn dir_synced(&self, dir: &Path, before: &Entries) {
        let _ = dir;
        let mut s = self.lock();
        s.syncs += 1;
        for (path, t) in s.files.iter_mut() {
            if before.files.contains(path) {
                t.entry_durable = true;
            }
        }
        s.new_dirs.retain(|d| !before.new_dirs.contains(d));
        s.removed.retain(|(p, _)| !before.removed.contains(p));
        s.renamed
            .retain(|(_, to, _, _)| !before.renamed.contains(to));
    }

    /// Simulates a power loss: see the module doc. Afterwards everything on disk counts
    /// as durable.
    pub fn power_loss(&self, torn: Torn) -> std::io::Result<()> {
        let mut s = self.lock();
        // Undo what never became durable, newest first.
        while let Some((from, to, before, from_durable)) = s.renamed.pop() {
            if let Some(mut moved) = s.files.remove(&to) {
                moved.entry_durable = from_durable;
                s.files.insert(from.clone(), moved);
            }
            match before {
                Some(t) => {
                    s.files.insert(to, t);
                }
                None => {
                    let _ = std::fs::remove_file(&to);
                }
            }
        }
        while let Some((path, t)) = s.removed.pop() {
            s.files.insert(path, t);
        }
        let files: Vec<(PathBuf, Tracked)> = s.files.drain().collect();
        for (path, t) in files {
            if !t.entry_durable {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let now = std::fs::read(&path).unwrap_or_default();
            let mut keep = t.durable.clone();
            if now.len() > keep.len() && now.starts_with(&keep) {
                let extra = (now.len() - keep.len()) as u64;
                let n = match torn {
                    Torn::Nothing => 0,
                    Torn::Bytes(n) => n.min(extra),
                    Torn::Pages(p) => (p * 4096).min(extra),
                };
                keep.extend_from_slice(&now[t.durable.len()..t.durable.len() + n as usize]);
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &keep)?;
        }
        for dir in s.new_dirs.drain(..).rev() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        s.inodes.clear();
        Ok(())
    }
}

impl FileIo for FaultIo {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<File> {
        if mode != OpenMode::Read {
            self.check(Op::Open, path)?;
        }
        let existed = path.exists();
        let file = self.real.open(path, mode)?;
        if mode == OpenMode::Read {
            // A directory opened to be synced through the flusher.
            self.lock().inodes.insert(inode(&file)?, path.to_path_buf());
            return Ok(file);
        }
        let mut s = self.lock();
        if existed {
            Self::track_existing(&mut s, path);
        } else {
            s.files.insert(
                path.to_path_buf(),
                Tracked {
                    durable: Vec::new(),
                    entry_durable: false,
                },
            );
        }
        s.inodes.insert(inode(&file)?, path.to_path_buf());
        Ok(file)
    }

    fn write_vectored(
        &self,
        path: &Path,
        file: &File,
        bufs: &[IoSlice<'_>],
    ) -> std::io::Result<usize> {
        self.check(Op::Write, path)?;
        let short = self
            .lock()
            .short_writes
            .as_ref()
            .is_some_and(|p| path.to_string_lossy().contains(p.as_str()));
        if short {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            let want = (total / 2).max(1);
            let mut flat = Vec::with_capacity(want);
            for b in bufs {
                let take = (want - flat.len()).min(b.len());
                flat.extend_from_slice(&b[..take]);
                if flat.len() == want {
                    break;
                }
            }
            return self.real.write_vectored(path, file, &[IoSlice::new(&flat)]);
        }
        self.real.write_vectored(path, file, bufs)
    }

    fn set_len(&self, path: &Path, file: &File, len: u64) -> std::io::Result<()> {
        self.check(Op::SetLen, path)?;
        self.real.set_len(path, file, len)
    }

    fn sync(&self, file: &File, all: bool) -> std::io::Result<()> {
        let path = self.lock().inodes.get(&inode(file)?).cloned();
        let path = path.unwrap_or_default();
        self.check(Op::Sync, &path)?;
        if file.metadata()?.is_dir() {
            let before = self.entries_in(&path);
            self.real.sync(file, all)?;
            self.dir_synced(&path, &before);
        } else {
            let contents = std::fs::read(&path).unwrap_or_default();
            self.real.sync(file, all)?;
            self.snapshot(&path, contents);
        }
        Ok(())
    }

    fn sync_map(&self, path: &Path, map: &MmapMut) -> std::io::Result<()> {
        self.check(Op::Sync, path)?;
        let contents = std::fs::read(path).unwrap_or_default();
        self.real.sync_map(path, map)?;
        self.snapshot(path, contents);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.check(Op::Sync, dir)?;
        let before = self.entries_in(dir);
        self.real.sync_dir(dir)?;
        self.dir_synced(dir, &before);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.check(Op::Rename, to)?;
        {
            let mut s = self.lock();
            Self::track_existing(&mut s, from);
            if to.exists() {
                Self::track_existing(&mut s, to);
            }
        }
        self.real.rename(from, to)?;
        let mut s = self.lock();
        let before = s.files.remove(to);
        let mut from_durable = false;
        if let Some(mut moved) = s.files.remove(from) {
            from_durable = moved.entry_durable;
            moved.entry_durable = false;
            // Until the directory is synced, a power loss brings back the old names;
            // the moved file keeps its durable contents either way.
            s.files.insert(to.to_path_buf(), moved);
        }
        s.renamed
            .push((from.to_path_buf(), to.to_path_buf(), before, from_durable));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.check(Op::Remove, path)?;
        {
            let mut s = self.lock();
            Self::track_existing(&mut s, path);
        }
        self.real.remove_file(path)?;
        let mut s = self.lock();
        if let Some(t) = s.files.remove(path) {
            if t.entry_durable {
                s.removed.push((path.to_path_buf(), t));
            }
        }
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.check(Op::Remove, path)?;
        self.real.remove_dir_all(path)?;
        // Taken as durable at once: the broker removes whole directories only for
        // deleted topics, whose metadata was removed (and synced) first.
        let mut s = self.lock();
        s.files.retain(|p, _| !p.starts_with(path));
        s.removed.retain(|(p, _)| !p.starts_with(path));
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        let mut missing = Vec::new();
        let mut at = Some(path);
        while let Some(p) = at.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            missing.push(p.to_path_buf());
            at = p.parent();
        }
        self.real.create_dir_all(path)?;
        self.lock().new_dirs.extend(missing.into_iter().rev());
        Ok(())
    }
}
