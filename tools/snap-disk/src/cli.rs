//! The flags of snap-disk, its verbs, and its name on every message.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};

use snap_shared::error::Result;

/// The name on every message.
pub const TOOL: &str = "snap-disk";

#[derive(Debug, Parser)]
#[command(
    name = "snap-disk",
    version,
    about = "Snapshots of VM disk images: qcow2 internal, overlay chains, and changed-blocks-only",
    long_about = "Snapshots of VM disk images, as rollback points before an upgrade and as the \
source of an off-machine copy that only sends what changed.\n\n\
Three methods: qcow2-internal (the default for qcow2 images) runs `qemu-img snapshot` and keeps \
a description and tags beside it; overlay (--overlay) freezes the image as a read-only backing file \
in IMAGE.snapshots/ and continues in a new overlay at the same path; blocks (the default for every \
other image) cuts the image into fixed blocks, stores each distinct non-zero block once, zstd-compressed \
(and age-encrypted with --recipient), in the store's disks/DISK/blocks/, and records a block map, so a \
second snapshot stores only the blocks that changed.\n\n\
A running VM's disk is snapshotted through its QEMU (--qmp SOCKET, or the config's \"disks\" entry): one QMP \
transaction fixes the point in time, a dirty bitmap tells which blocks changed since the last snapshot, and only \
those are read (--freeze also freezes the guest's filesystems through its guest agent). A libvirt domain's disk \
(--domain NAME, the config's \"domain\", or found from the QEMU holding the image) is read the same way through \
libvirt: a checkpoint and a pull-mode backup job (virsh backup-begin). A stopped qcow2 image \
is read through a qemu-storage-daemon of snap-disk's own: only its allocated blocks, and a dirty bitmap is kept \
in the image for the next snapshot. `serve` exports a blocks snapshot over NBD so that a VM boots from it at once.\n\n\
A DISK operand is an image file, or the name of a disk that has snapshots (the image's file name without \
its extension, unless create was given --disk).\n\n\
A running VM's qcow2 image takes internal snapshots through its QEMU too: --vm-state saves its memory \
and devices with the disks, as savevm does (the guest pauses for the save, and the time is printed); \
without it the snapshot is disk-only. restore of such a snapshot is loadvm (the VM continues from its \
memory; a load QEMU fails leaves the VM paused, as QEMU always does), and delete works online. list shows \
every internal snapshot, whoever made it (qemu-img, savevm, virsh), and restore, delete and export take \
them by tag or ID.\n\n\
Otherwise restore and delete refuse (exit 75, naming the process, or the libvirt domain) while a process has the \
image open, such as a running VM; restore --stop shuts a libvirt domain down first and starts it again after. A blocks restore rewrites in place only the blocks that differ, after checking the \
blocks it needs, and when killed is finished by running it again.\n\n\
Exit codes: 0 done; 1 the --before command failed; 64 usage; 65 a damaged snapshot or block map; \
66 no such image or snapshot; 69 qemu-img is missing, or QEMU's monitor is unreachable or refused; \
73 cannot create the output; 74 I/O error; 75 the image is in use or the store is busy; 78 bad config; \
130 interrupted (a live snapshot thaws the guest and takes its nodes out of QEMU first).",
    after_help = "Examples:\n  snap-disk create ~/vms/dev.qcow2 before-upgrade -d \"Before system upgrade\"\n  snap-disk create ~/vms/win.raw                     a blocks snapshot named by the time\n  snap-disk create ~/vms/dev.qcow2 --overlay clean-install\n  snap-disk create ~/vms/dev.raw --before \"ssh dev sudo apt full-upgrade -y\"\n  snap-disk create ~/vms/web.qcow2 --qmp /run/vm/web.qmp --freeze --guest-agent /run/vm/web.qga\n  snap-disk create ~/vms/dev.qcow2 before-upgrade --qmp /run/vm/dev.qmp --vm-state\n  snap-disk create --domain web                      a libvirt domain's disk, live\n  snap-disk restore web 2026-12-01T101500Z --stop\n  snap-disk serve web 2026-12-01T101500Z --from t9\n  snap-disk list\n  snap-disk restore dev before-upgrade\n  snap-disk export win 2026-12-01T101500Z win.raw.zst\n  snap-disk create ~/vms/win.raw | snap-push --dest t9",
    mut_arg("verbose", |a| a.help("Print more detail"))
)]
pub struct Cli {
    /// Store directory [default: $SNAP_STORE, else $DBACKUP, else the config's "store", else ~/.local/share/snap]
    #[arg(short, long, value_name = "DIR", global = true)]
    pub store: Option<PathBuf>,

    /// Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]
    #[arg(short, long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub loudness: snap_cli::Loudness,

    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Snapshot an image
    Create(Box<CreateArgs>),
    /// List the snapshots of one disk or of every disk
    List {
        /// Image file or disk name [default: every disk in the store]
        disk: Option<String>,
        #[command(flatten)]
        monitor: MonitorArgs,
    },
    /// Show one snapshot in detail
    Show {
        /// Image file or disk name
        disk: String,
        /// Snapshot name (an internal snapshot's tag or ID)
        name: String,
        #[command(flatten)]
        monitor: MonitorArgs,
    },
    /// Bring the image back to a snapshot (or write the snapshot to a new file)
    Restore(RestoreArgs),
    /// Delete snapshots
    Delete {
        /// Image file or disk name
        disk: String,
        /// Snapshot names (an internal snapshot's tag or ID)
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        monitor: MonitorArgs,
        #[command(flatten)]
        libvirt: DomainArgs,
    },
    /// Write a snapshot as a standalone image, by the name's suffix (.qcow2.zst, .raw.gz, .vhdx, …), optionally age-encrypted
    Export {
        /// Image file or disk name
        disk: String,
        /// Snapshot name
        name: String,
        /// The image to write; its suffix picks the format: .raw, .img, .qcow2 (each also with .zst or .gz), .vhdx, .vdi, .vmdk; then .age when encrypted
        out: PathBuf,
        /// Encrypt the file as a whole to this age recipient (age1… or ssh public key; repeatable); the name ends in .age
        #[arg(short, long = "recipient", value_name = "RECIPIENT", action = ArgAction::Append)]
        recipients: Vec<String>,
        /// Encrypt to the recipients in FILE (repeatable)
        #[arg(short = 'R', long = "recipients-file", value_name = "FILE", action = ArgAction::Append)]
        recipients_files: Vec<PathBuf>,
        #[command(flatten)]
        keys: Keys,
        #[command(flatten)]
        monitor: MonitorArgs,
    },
    /// Check that snapshots are intact: every block there and matching its sha256, chains whole
    Verify {
        /// Image file or disk name
        disk: String,
        /// Only this snapshot [default: all of the disk]
        name: Option<String>,
        #[command(flatten)]
        keys: Keys,
        #[command(flatten)]
        monitor: MonitorArgs,
    },
    /// Export a blocks snapshot read-only over NBD on a unix socket, to boot a VM from it at once
    Serve(ServeArgs),
    /// Fold an overlay chain back into one image (its overlay snapshots are gone after)
    Commit {
        /// Image file or disk name
        disk: String,
    },
    /// Give back the space a stopped qcow2 image no longer uses: a new copy, proved equal, swapped in
    Compact {
        /// Image file or disk name
        disk: String,
        /// Drop the image's internal snapshots that were not exported (a convert cannot keep them)
        #[arg(long)]
        drop_snapshots: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    #[value(name = "qcow2-internal")]
    Qcow2Internal,
    Overlay,
    Blocks,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Qcow2Internal => "qcow2-internal",
            Method::Overlay => "overlay",
            Method::Blocks => "blocks",
        }
    }
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct CreateArgs {
    /// The image file (with --domain: the snapshot's name, the image being the domain's disk)
    #[arg(required_unless_present_any = ["all", "domain"])]
    pub image: Option<PathBuf>,

    /// Snapshot every disk in the config's "disks", each through its own QMP socket or libvirt domain when it runs (one failing does not stop the rest)
    #[arg(long, conflicts_with_all = ["image", "name", "disk", "qmp", "node", "nbd_server", "guest_agent", "before", "domain", "target"])]
    pub all: bool,

    /// Snapshot name [default: the time, like 2026-12-01T101500Z]
    pub name: Option<String>,

    /// Disk name in the store [default: the image's file name without extension]
    #[arg(long, value_name = "NAME")]
    pub disk: Option<String>,

    /// How to snapshot [default: qcow2-internal for qcow2 images, blocks for the rest]
    #[arg(short, long, value_name = "METHOD")]
    pub method: Option<Method>,

    /// Same as --method overlay
    #[arg(long, conflicts_with = "method")]
    pub overlay: bool,

    /// Description
    #[arg(short, long, value_name = "TEXT")]
    pub description: Option<String>,

    /// Tag the snapshot (repeatable; snap-prune --keep-tag keeps tagged ones)
    #[arg(short, long = "tag", value_name = "TAG", action = ArgAction::Append)]
    pub tags: Vec<String>,

    /// Fail (exit 75) when a process has the image open: no snapshot through its QEMU, none read as it changes
    #[arg(long, conflicts_with = "vm_state")]
    pub require_stopped: bool,

    #[command(flatten)]
    pub monitor: MonitorArgs,

    #[command(flatten)]
    pub libvirt: DomainArgs,

    /// With --qmp or a running libvirt domain: an internal snapshot holding the VM's memory and device state too, as savevm makes (the guest pauses for the save; libvirt: virsh snapshot-create-as)
    #[arg(long)]
    pub vm_state: bool,

    /// With --vm-state: save the VM state into this other qcow2 image of the VM [default: IMAGE]
    #[arg(long, value_name = "IMAGE", requires = "vm_state")]
    pub vm_state_disk: Option<PathBuf>,

    /// With --qmp: the unix socket of the NBD server this QEMU already runs (it runs at most one)
    #[arg(long, value_name = "SOCKET")]
    pub nbd_server: Option<PathBuf>,

    /// With --qmp or a libvirt domain: freeze the guest's filesystems for the instant of the snapshot (application-consistent; libvirt: the backup's --quiesce)
    #[arg(long)]
    pub freeze: bool,

    /// The VM's qemu-guest-agent socket, for --freeze
    #[arg(long, value_name = "SOCKET")]
    pub guest_agent: Option<PathBuf>,

    /// With --domain: which of its disks, by target (vda, sdb) [default: its only disk]
    #[arg(long, value_name = "DEV", requires = "domain")]
    pub target: Option<String>,

    /// Block size of the blocks method, fixed at the disk's first snapshot
    #[arg(long, value_name = "SIZE", value_parser = parse_block_size)]
    pub block_size: Option<u64>,

    /// Encrypt blocks to this age recipient (age1… or ssh public key; repeatable; fixed at the first snapshot)
    #[arg(short, long = "recipient", value_name = "RECIPIENT", action = ArgAction::Append)]
    pub recipients: Vec<String>,

    /// Encrypt blocks to the recipients in FILE (repeatable)
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE", action = ArgAction::Append)]
    pub recipients_files: Vec<PathBuf>,

    /// Encrypt blocks to the recipients of these identity files (a
    /// restore's undo snapshot of an encrypted disk: it has only identities).
    #[arg(skip)]
    pub identities_as_recipients: Vec<PathBuf>,

    /// Snapshot, then run CMD (sh -c); if it fails, say how to roll back
    #[arg(long, value_name = "CMD")]
    pub before: Option<String>,

    /// With --before: when CMD fails, restore the snapshot (only when no process has the image open)
    #[arg(long, requires = "before")]
    pub rollback_on_failure: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Image file or disk name
    pub disk: String,

    /// Snapshot name
    pub name: String,

    /// Write the snapshot to this new file instead of rewriting the image (blocks: sparse raw)
    #[arg(long, value_name = "FILE")]
    pub to: Option<PathBuf>,

    /// Overwrite without first taking a snapshot of what the image holds now (before-restore-TIME, tagged pre-restore)
    #[arg(long, conflicts_with = "to")]
    pub no_undo: bool,

    /// Say what the restore would do (for a blocks snapshot: the blocks it would rewrite) and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// When a libvirt domain runs the image: shut it down (virsh shutdown), restore, and start it again
    #[arg(long, conflicts_with = "to")]
    pub stop: bool,

    /// With --stop: how long the guest has to shut down
    #[arg(long, value_name = "SECS", default_value_t = 120, requires = "stop")]
    pub timeout: u64,

    /// With --stop: destroy the domain (pull the plug) when it has not shut down in time
    #[arg(long, requires = "stop")]
    pub force: bool,

    #[command(flatten)]
    pub keys: Keys,

    #[command(flatten)]
    pub monitor: MonitorArgs,

    #[command(flatten)]
    pub libvirt: DomainArgs,
}

/// Where the QEMU running an image listens, for the verbs that work on a running VM.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MonitorArgs {
    /// QMP socket of the QEMU running the image: create reads a point-in-time blocks snapshot through it (or an internal one with --vm-state); restore, delete, list and export use the VM's own view [default: the config's disk entry, while the image is in use]
    #[arg(long, value_name = "SOCKET")]
    pub qmp: Option<PathBuf>,

    /// With --qmp: the image's block node [default: the format node whose file is IMAGE]
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
}

/// The libvirt domain that runs an image, for the verbs that act on one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DomainArgs {
    /// The libvirt domain that runs the image: create reads it live through libvirt's backup API, restore refuses while it runs (or stops it with --stop) [default: the config's disk entry, else the domain whose QEMU holds the image]
    #[arg(long, value_name = "NAME", conflicts_with_all = ["qmp", "node"])]
    pub domain: Option<String>,

    /// libvirt's URI, as virsh -c takes it [default: the config's disk entry, else virsh's: $LIBVIRT_DEFAULT_URI, else qemu:///system for root]
    #[arg(long, value_name = "URI")]
    pub connect: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Disk name (or its image file)
    pub disk: String,

    /// Snapshot name (a blocks snapshot)
    pub name: String,

    /// The unix socket to listen on [default: $XDG_RUNTIME_DIR/snap-disk-DISK-NAME.nbd, else in /tmp]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Read the snapshot at a destination: a configured name, a URL (s3://, gs://, az://) or a folder
    #[arg(long, value_name = "DEST")]
    pub from: Option<String>,

    /// Keep blocks fetched from a bucket here, for the next read and the next server [default: ~/.cache/snap/serve/DISK]
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,

    #[command(flatten)]
    pub keys: Keys,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Keys {
    /// age identity file for encrypted blocks (repeatable)
    #[arg(short, long = "identity", value_name = "FILE", action = ArgAction::Append)]
    pub identities: Vec<PathBuf>,
}

impl Keys {
    pub fn decrypt(&self) -> Result<snap_shared::crypt::Decrypt> {
        let mut dec = snap_shared::crypt::Decrypt::default();
        for f in &self.identities {
            dec.identities
                .extend(snap_shared::crypt::read_identity_file(f)?);
        }
        Ok(dec)
    }
}

/// Block sizes from 64 KiB to 16 MiB, powers of two.
fn parse_block_size(s: &str) -> std::result::Result<u64, String> {
    let n = snap_shared::size::parse_size(s)?;
    if !n.is_power_of_two() || !(64 << 10..=16 << 20).contains(&n) {
        return Err("a power of two from 64K to 16M".into());
    }
    Ok(n)
}
