//! Keeping the C allocator from holding memory the gateway no longer uses.
//! Two things, both measured at 10,000 Modbus tags (README "Memory"):
//!
//! - Parsing a large tag map (its TOML tree holds about 3 KB a tag) and
//!   building the pipeline free far more than they keep. glibc's malloc
//!   keeps freed pages in its arenas, so a gateway would carry that peak
//!   for its whole life: [`release_free_pages`] after start-up and reloads.
//! - glibc raises its mmap threshold each time a large block is freed, and
//!   large blocks then come from recycled heap, which `calloc` must clear
//!   page by page. The store's zero-filled tables (sled's metric
//!   histograms, its page table: about 28 MB, touched a little at a time)
//!   would then all be resident. A fixed threshold ([`configure`]) keeps
//!   large blocks in fresh mappings, whose untouched pages cost nothing.
//!
//! A no-op where the allocator is not glibc's.

/// Blocks of this size and above get a mapping of their own (glibc's
/// initial threshold, kept fixed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Fix the mmap threshold. Call first thing in `main`, before any thread.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes no pointer and only sets the allocator's own
    // parameter under its lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Return every whole free page of every arena to the system.
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only walks the allocator's
    // own free lists under its locks; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
