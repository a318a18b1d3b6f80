//! Durable file operations, in the order Moonfire NVR uses: create with `O_EXCL`, write, sync
//! the file, sync the directory, and only then write the metadata that points at the file.
//!
//! The `unsafe` of this crate is here: the `libc` calls for `sync_file_range`, `posix_fadvise`
//! and `statvfs`, which std does not wrap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout;

/// Creates `path`, failing if it exists (`O_CREAT | O_EXCL`).
pub(crate) fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::Exists {
                    path: path.to_owned(),
                }
            } else {
                Error::io(path, e)
            }
        })
}

/// Syncs a directory, so the names created, renamed or removed in it survive a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Creates `dir` and any missing parents, syncing each parent whose listing changed.
pub(crate) fn create_dirs(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    // A relative path's last parent is "": the current directory.
    let parent = dir.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    if let Some(parent) = parent {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = parent {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Replaces `path` with `bytes` atomically: a temporary file beside it, synced, renamed over it,
/// and the directory synced. A crash leaves either the old or the new file (and maybe the
/// temporary, which recovery removes).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = layout::temp_path(path);
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir)?,
        _ => sync_dir(Path::new("."))?,
    }
    Ok(())
}

/// Removes a file and tolerates that it is already gone.
pub(crate) fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// How a segment's data reaches the disk before the segment is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WriteBack {
    /// After each fragment: start write-back of it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`),
    /// wait for the previous fragment's, and drop it from the page cache (`POSIX_FADV_DONTNEED`:
    /// footage is written once and rarely read). Sealing then finds almost nothing dirty, so
    /// its `fdatasync` is short. Falls back to [`WriteBack::Off`] for a file whose file system
    /// refuses `sync_file_range`.
    #[default]
    Early,
    /// Plain buffered writes; sealing's `fdatasync` writes the whole segment.
    Off,
}

/// Per-file state of [`WriteBack::Early`].
#[derive(Debug)]
pub(crate) struct WriteBackState {
    mode: WriteBack,
    /// The range handed to write-back last, not yet waited for.
    in_flight: Option<(u64, u64)>,
    /// Set when the file system refused `sync_file_range`.
    pub(crate) refused: Option<io::Error>,
}

impl WriteBackState {
    pub(crate) fn new(mode: WriteBack) -> Self {
        WriteBackState {
            mode,
            in_flight: None,
            refused: None,
        }
    }

    /// `offset..offset+len` of `file` was just written.
    pub(crate) fn written(&mut self, file: &File, offset: u64, len: u64) {
        if self.mode != WriteBack::Early || len == 0 {
            return;
        }
        let fd = file.as_raw_fd();
        if let Some((o, l)) = self.in_flight.take() {
            let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            if let Err(e) = sync_file_range(fd, o, l, flags) {
                self.refuse(e);
                return;
            }
            // SAFETY: posix_fadvise only reads its integer arguments; `fd` is open for the
            // lifetime of `file`, which the caller borrows.
            unsafe {
                libc::posix_fadvise(fd, o as i64, l as i64, libc::POSIX_FADV_DONTNEED);
            }
        }
        match sync_file_range(fd, offset, len, libc::SYNC_FILE_RANGE_WRITE) {
            Ok(()) => self.in_flight = Some((offset, len)),
            Err(e) => self.refuse(e),
        }
    }

    fn refuse(&mut self, e: io::Error) {
        tracing::debug!("sync_file_range refused ({e}): plain writes for this segment");
        self.mode = WriteBack::Off;
        self.in_flight = None;
        self.refused = Some(e);
    }
}

fn sync_file_range(fd: i32, offset: u64, len: u64, flags: u32) -> io::Result<()> {
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: sync_file_range takes plain integers; an invalid descriptor or range is reported
    // as an error return, never undefined behaviour.
    let r = unsafe { libc::sync_file_range(fd, off, n, flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Free and total bytes of the file system holding `path` (for unprivileged users: `f_bavail`).
pub fn disk_space(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{}: NUL in path", path.display())))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` points at writable memory of the right
    // type; statvfs fills it on success and we read it only then.
    let r = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(Error::io(path, io::Error::last_os_error()));
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    // The field types differ between platforms (u32 on 32-bit glibc, u64 here).
    #[allow(clippy::useless_conversion)]
    let (frsize, bavail, blocks) = (
        u64::from(st.f_frsize),
        u64::from(st.f_bavail),
        u64::from(st.f_blocks),
    );
    Ok((bavail.saturating_mul(frsize), blocks.saturating_mul(frsize)))
}

/// The writer's lock on a store: an exclusive `flock` on `STORE/.lock`, released when dropped
/// (and by the kernel when the process dies, so a crash never leaves a stale lock).
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

impl Lock {
    pub(crate) fn acquire(root: &Path) -> Result<Lock> {
        let path: PathBuf = root.join(layout::LOCK);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "holder unknown".into());
                return Err(Error::Locked { path, holder });
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let who = format!("pid {} {exe}\n", std::process::id());
        let write = |f: &mut File| -> io::Result<()> {
            f.set_len(0)?;
            use std::io::Seek;
            f.seek(io::SeekFrom::Start(0))?;
            f.write_all(who.as_bytes())
        };
        write(&mut file).map_err(|e| Error::io(&path, e))?;
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_back_falls_back_where_sync_file_range_is_refused() {
        // A pipe: sync_file_range answers ESPIPE, as some file systems answer EINVAL.
        let (reader, writer) = std::io::pipe().unwrap();
        let file = File::from(std::os::fd::OwnedFd::from(writer));
        let mut wb = WriteBackState::new(WriteBack::Early);
        wb.written(&file, 0, 10);
        assert!(wb.refused.is_some());
        assert_eq!(wb.mode, WriteBack::Off);
        wb.written(&file, 10, 10); // no second attempt, no error
        drop(reader);
    }

    #[test]
    fn write_back_on_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let mut f = create_new(&path).unwrap();
        let mut wb = WriteBackState::new(WriteBack::Early);
        for i in 0..4u64 {
            f.write_all(&[7u8; 4096]).unwrap();
            wb.written(&f, i * 4096, 4096);
        }
        assert!(wb.refused.is_none(), "{:?}", wb.refused);
        assert!(matches!(create_new(&path), Err(Error::Exists { .. })));
        assert_eq!(fs::read(&path).unwrap(), vec![7u8; 4 * 4096]);
    }

    #[test]
    fn second_lock_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(dir.path()).unwrap();
        match Lock::acquire(dir.path()) {
            Err(Error::Locked { holder, .. }) => {
                assert!(holder.contains(&std::process::id().to_string()), "{holder}")
            }
            other => panic!("second writer got {other:?}"),
        }
        drop(first);
        Lock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!layout::temp_path(&p).exists());
        let (free, total) = disk_space(dir.path()).unwrap();
        assert!(total > 0 && free <= total);
    }
}
