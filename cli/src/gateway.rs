//! The gateway build (`--no-default-features`: no query engine, no server) runs on devices
//! with tens of megabytes, so it trades a little speed for memory. Each setting's effect on
//! the peak RSS of `floe append` and `floe sync` is measured in BENCHMARKS.md, "Gateway
//! memory (issue 19)".

/// Row groups of at most this many (estimated, compressed) bytes, for tables that do not
/// set `write.parquet.row-group-size-bytes`. A writer buffers a whole row group, its
/// dictionaries and a copy of its bytes before they leave; 256 KiB is about 13,000 IoT
/// readings (the full build's 65,536-row groups are near 1 MiB): 77 row groups per million
/// rows, each with its own statistics for pruning.
pub const ROW_GROUP_BYTES: usize = 256 * 1024;

/// glibc's mmap threshold, fixed at its initial 128 KiB. glibc raises it (up to 32 MiB)
/// each time a mapped block is freed, after which the writer's row-group buffers are
/// carved from the heap, where they fragment it and stay resident.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Apply the settings; called first thing in `main`, before any thread starts.
pub fn tune() {
    floe_table_format::writer::set_default_row_group_bytes(Some(ROW_GROUP_BYTES));
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    mmap_threshold();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn mmap_threshold() {
    // SAFETY: mallopt only sets an allocator parameter (a fixed threshold also keeps glibc's
    // trim threshold at its 128 KiB default); it is called before any other thread exists.
    // It returns 0 on failure, which leaves glibc's defaults: nothing to do.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
