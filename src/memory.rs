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
                    log_heap();
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

/// jemalloc's view of the heap, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in live allocations.
    pub allocated: usize,
    /// Bytes in pages that hold live allocations (allocated plus the rest of their slabs).
    pub active: usize,
    /// Bytes resident for jemalloc: active pages, its metadata and not yet purged pages.
    pub resident: usize,
    /// Bytes of jemalloc's own bookkeeping.
    pub metadata: usize,
}

/// jemalloc's counters now, where the binary allocates with it (the `jemalloc` feature);
/// `None` elsewhere or when they cannot be read.
pub fn heap_stats() -> Option<HeapStats> {
    #[cfg(feature = "jemalloc")]
    {
        use tikv_jemalloc_ctl::{epoch, stats};
        epoch::advance().ok()?;
        Some(HeapStats {
            allocated: stats::allocated::read().ok()?,
            active: stats::active::read().ok()?,
            resident: stats::resident::read().ok()?,
            metadata: stats::metadata::read().ok()?,
        })
    }
    #[cfg(not(feature = "jemalloc"))]
    None
}

fn log_heap() {
    // Read only when someone listens: the counters are a debug aid.
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    if let Some(h) = heap_stats()
        && h.allocated > 0
    {
        tracing::debug!(
            allocated_kib = h.allocated / 1024,
            active_kib = h.active / 1024,
            resident_kib = h.resident / 1024,
            metadata_kib = h.metadata / 1024,
            "heap"
        );
    }
}
