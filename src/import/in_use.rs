//! Whether Estuary's database is open in another process (a running gateway), so that an
//! import does not write behind its back.
//!
//! Only SQLite files are checked. Estuary keeps them in write-ahead-log mode, and every
//! connection to such a file holds a shared lock on the "dead man switch" byte of its
//! `-shm` file (byte 128: SQLite's `UNIX_SHM_DMS`) for as long as it is open, idle or not.
//! `fcntl(F_GETLK)` says whether another process holds a lock there. A PostgreSQL
//! database cannot be told apart from one shared with other deployments: not checked.

use super::ImportError;
use std::os::fd::AsRawFd as _;
use std::path::Path;

/// The byte of the `-shm` file every open connection keeps a shared lock on.
const SHM_DMS: libc::off_t = 128;

/// Fails with [`ImportError::InUse`] if the SQLite database of `url` is open in another
/// process.
pub fn refuse_if_in_use(url: &str) -> Result<(), ImportError> {
    let Some(path) = crate::db::sqlite_file(url) else {
        return Ok(());
    };
    if held_elsewhere(&path) {
        return Err(ImportError::InUse(path.display().to_string()));
    }
    Ok(())
}

/// Whether another process has the SQLite file at `path` open in WAL mode.
pub fn held_elsewhere(path: &Path) -> bool {
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    let Ok(file) = std::fs::File::open(&shm) else {
        // No shared-memory file: no connection in WAL mode.
        return false;
    };
    // SAFETY: `flock` is plain data; all-zero is a valid value, filled in below.
    let mut probe: libc::flock = unsafe { std::mem::zeroed() };
    probe.l_type = libc::F_WRLCK as _;
    probe.l_whence = libc::SEEK_SET as _;
    probe.l_start = SHM_DMS;
    probe.l_len = 1;
    // SAFETY: the descriptor is open for the duration of the call, and `probe` is a valid
    // `flock` that F_GETLK writes into.
    let done = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut probe) };
    done == 0 && i32::from(probe.l_type) != libc::F_UNLCK
}
