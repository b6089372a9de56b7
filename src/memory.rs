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
            // Room for the tracing subscriber's formatting: 64 KiB overflowed (and aborted
            // the gateway) as soon as `estuary=debug` made `log_heap` log.
            .stack_size(512 * 1024)
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
    if tracing::enabled!(tracing::Level::TRACE) {
        log_size_classes();
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

/// One of jemalloc's small size classes: how many of its slots are used, in how many slabs
/// of how many slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeClass {
    /// The size of one slot, in bytes.
    pub size: usize,
    /// Slots in one slab.
    pub slots_per_slab: usize,
    /// Slots in use (live allocations of this class).
    pub used: usize,
    /// Slabs that hold them.
    pub slabs: usize,
}

impl SizeClass {
    /// Bytes in this class's slabs that hold no allocation (the slabs' unused slots).
    pub fn slack(&self) -> usize {
        (self.slabs * self.slots_per_slab).saturating_sub(self.used) * self.size
    }
}

/// jemalloc's small size classes with their use, all arenas together; empty where the
/// binary does not allocate with jemalloc or the counters cannot be read.
pub fn size_classes() -> Vec<SizeClass> {
    #[cfg(feature = "jemalloc")]
    {
        use tikv_jemalloc_ctl::{epoch, raw};
        /// jemalloc's name for "every arena merged" in `stats.arenas.<i>`.
        const ALL_ARENAS: u32 = 4096;
        fn read<T: Copy>(name: String) -> Option<T> {
            let name = format!("{name}\0");
            // SAFETY: every name read here is a jemalloc counter of type T (u32 or usize,
            // per jemalloc's mallctl documentation), and the name is NUL-terminated.
            unsafe { raw::read::<T>(name.as_bytes()) }.ok()
        }
        if epoch::advance().is_err() {
            return Vec::new();
        }
        let bins = read::<u32>("arenas.nbins".into()).unwrap_or(0);
        (0..bins)
            .filter_map(|i| {
                Some(SizeClass {
                    size: read::<usize>(format!("arenas.bin.{i}.size"))?,
                    slots_per_slab: read::<u32>(format!("arenas.bin.{i}.nregs"))? as usize,
                    used: read::<usize>(format!("stats.arenas.{ALL_ARENAS}.bins.{i}.curregs"))?,
                    slabs: read::<usize>(format!("stats.arenas.{ALL_ARENAS}.bins.{i}.curslabs"))?,
                })
            })
            .collect()
    }
    #[cfg(not(feature = "jemalloc"))]
    Vec::new()
}

/// At trace level: every small size class that holds something, with its slack, so that
/// one can see where the heap's partly used pages are.
fn log_size_classes() {
    for class in size_classes().into_iter().filter(|c| c.slabs > 0) {
        tracing::trace!(
            size = class.size,
            used = class.used,
            slabs = class.slabs,
            slots_per_slab = class.slots_per_slab,
            slack_kib = class.slack() / 1024,
            "size class"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_is_the_room_of_the_unused_slots() {
        let class = SizeClass {
            size: 512,
            slots_per_slab: 8,
            used: 130,
            slabs: 29,
        };
        assert_eq!(class.slack(), (29 * 8 - 130) * 512);
        let full = SizeClass {
            size: 32,
            slots_per_slab: 128,
            used: 256,
            slabs: 2,
        };
        assert_eq!(full.slack(), 0);
    }

    #[cfg(feature = "jemalloc")]
    #[test]
    fn jemalloc_lists_its_small_classes_smallest_first() {
        let classes = size_classes();
        assert!(classes.len() > 20, "{classes:?}");
        assert_eq!(classes[0].size, 8);
        assert!(classes.windows(2).all(|w| w[0].size < w[1].size));
        assert!(classes.iter().all(|c| c.slots_per_slab >= 1));
    }
}
