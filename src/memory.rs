//! Giving memory back to the system after bursts.
//!
//! glibc's allocator keeps the pages of freed memory inside its arenas: after a burst (a
//! thousand users joining at once, a backlog flushed after an XMPP server outage) the
//! gateway's resident size would stay at the burst's high-water mark. Every
//! [`TRIM_EVERY`], a background thread asks glibc to return whole free pages
//! (`malloc_trim`), so the resident size follows what the gateway actually holds. It costs
//! a walk over the free lists: well under a millisecond for a gateway of thousands of
//! users. Other C libraries (musl) return memory on their own; there it does nothing.

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
