//! Giving memory back to the system after bursts.
//!
//! The `estuary` binary allocates Rust's memory with jemalloc, set to hand freed pages back
//! within a second or so (see `src/main.rs`). The C libraries inside it (SQLite's page
//! cache, rustls' aws-lc) still use glibc's malloc, which keeps freed pages in its arenas:
//! every [`TRIM_EVERY`], a background thread asks glibc to return whole free pages
//! (`malloc_trim`). It costs a walk over glibc's free lists, well under a millisecond.
//! Other C libraries (musl) return memory on their own; there it does nothing.

use std::time::Duration;

/// How often free memory is handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Starts the trimming thread (once per process; later calls do nothing).
pub fn start_trimming() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("estuary-trim".into())
            .stack_size(64 * 1024)
            .spawn(|| {
                loop {
                    std::thread::sleep(TRIM_EVERY);
                    trim();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the memory trimming thread: {e}");
        }
    });
}

/// Returns free memory to the system now.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes a byte count, touches only the allocator's own free
        // lists, and is thread-safe in glibc.
        let released = unsafe { malloc_trim(0) };
        tracing::debug!(
            released = released == 1,
            "free memory handed back to the system"
        );
    }
}
