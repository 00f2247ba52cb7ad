//! The flags of `cargo xtask bench`: which suites, corpora and tools, how
//! many runs, where the work goes.

use std::path::PathBuf;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Runs per tool (medians are reported)
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: usize,
    /// Tools to measure
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "snap,snap-before,rsync,rsync+sync,rsync-aHAX,restic,rustic,borg"
    )]
    pub(crate) tools: Vec<String>,
    /// The commit whose snap-collect the collect suite's `snap-before` rows run (built once) [default: the last commit before snap kept extended attributes]
    #[arg(long, value_name = "REF", default_value = crate::baseline::BEFORE_ATTRIBUTES)]
    pub(crate) collect_baseline: String,
    /// Corpora to use
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tree-small,tree-large,usr-share"
    )]
    pub(crate) corpora: Vec<String>,
    /// Files in tree-small
    #[arg(long, default_value_t = 100_000)]
    pub(crate) small_files: usize,
    /// MiB in tree-large (four files)
    #[arg(long, default_value_t = 2048)]
    pub(crate) large_mib: u64,
    /// Where corpora and targets live [default: target/bench]
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Print the table but do not write docs/benchmarks.md
    #[arg(long)]
    pub(crate) no_write: bool,
    /// The commit the push and prune suites' coordination rows compare with (built once) [default: the last commit before locks at the destination]
    #[arg(long, value_name = "REF", default_value = crate::baseline::BEFORE_LOCKS)]
    pub(crate) baseline: String,
    /// Suites to run: collect (snap-collect against rsync, restic, rustic, borg),
    /// pack (snap-pack, snap-restore restore and verify against tar+zstd, restic and rustic)
    /// push (snap-push against rclone copy, to a folder and to S3; resume)
    /// prune (planning and deleting 100 and 1,000 archives at a folder and at S3);
    /// push or prune also measure what locks at the destination cost (against --baseline),
    /// which coord alone measures
    /// disk (snap-disk on a 2 GiB ext4 image against zstd, borg, restic, rustic, qemu-img;
    /// with hypervisors, which alone runs only VDI/VMDK restores and libvirt domains against
    /// qemu-img convert and virtnbdbackup)
    /// and timeline (snap-restore timeline --html on 10,000 snapshots; not in the default),
    /// churn (20 days of small changes against restic and borg; not in the default),
    /// overwrite (a restore over a tree already there, with its undo snapshot, against rsync --checksum; not in the default)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "collect,pack,push,prune,disk"
    )]
    pub(crate) suites: Vec<String>,
}
