//! One setting of glibc's allocator for a process that reads the ledger in bulk.
//!
//! sqlx's SQLite driver copies every column of every row into a value of its own on its
//! worker thread (`sqlite3_value_dup`, SQLite's malloc, which is glibc's), and the rows are
//! freed on another thread. A ledger row carries its signed header or event, about a
//! kilobyte: each such copy is a "large" request, and glibc answers every large request by
//! first consolidating its fast bins. On a verification of 200,000 entries `perf` put 25-30 %
//! of all CPU in `malloc_consolidate` and `unlink_chunk`. Without fast bins (small requests
//! are still served by the per-thread cache) that work is gone: verification took 2.3 s
//! instead of 3.4 s (`hub audit bench --entries 200000`). Replacing the allocator instead
//! (mimalloc overriding malloc) was as fast but doubled every service's resident memory.
//!
//! Only processes that serve or read the ledger call [`tune`]: the audit service, and
//! `hub audit`'s commands.

/// Turns off glibc malloc's fast bins in this process (`mallopt(M_MXFAST, 0)`, the same as
/// `GLIBC_TUNABLES=glibc.malloc.mxfast=0`). Elsewhere than on Linux with glibc, nothing.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes the allocator's own lock to change one of its settings; it is
    // thread-safe and 0 is a valid M_MXFAST (fast bins off). Blocks already in fast bins are
    // consolidated by glibc as the setting changes.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}
