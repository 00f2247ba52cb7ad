# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_snap_disk_global_optspecs
    string join \n s/store= c/config= q/quiet v/verbose h/help V/version
end

function __fish_snap_disk_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_snap_disk_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_snap_disk_using_subcommand
    set -l cmd (__fish_snap_disk_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c snap-disk -n "__fish_snap_disk_needs_command" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-disk -n "__fish_snap_disk_needs_command" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-disk -n "__fish_snap_disk_needs_command" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -s v -l verbose -d 'Print more detail'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -s V -l version -d 'Print version'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -f -a "create" -d 'Snapshot an image'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -f -a "list" -d 'List the snapshots of one disk or of every disk'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -f -a "show" -d 'Show one snapshot in detail'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -f -a "restore" -d 'Bring the image back to a snapshot (or write the snapshot to a new file)'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -f -a "delete" -d 'Delete snapshots'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -f -a "export" -d 'Write a snapshot as a standalone image, by the name\'s suffix (.qcow2.zst, .raw.gz, .vhdx, …), optionally age-encrypted'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -f -a "verify" -d 'Check that snapshots are intact: every block there and matching its sha256, chains whole'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -f -a "serve" -d 'Export a blocks snapshot read-only over NBD on a unix socket, to boot a VM from it at once'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -f -a "commit" -d 'Fold an overlay chain back into one image (its overlay snapshots are gone after)'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -f -a "compact" -d 'Give back the space a stopped qcow2 image no longer uses: a new copy, proved equal, swapped in'
complete -c snap-disk -n "__fish_snap_disk_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l disk -d 'Disk name in the store [default: the image\'s file name without extension]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -s m -l method -d 'How to snapshot [default: qcow2-internal for qcow2 images, blocks for the rest]' -r -f -a "qcow2-internal\t''
overlay\t''
blocks\t''"
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -s d -l description -d 'Description' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -s t -l tag -d 'Tag the snapshot (repeatable; snap-prune --keep-tag keeps tagged ones)' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l qmp -d 'QMP socket of the QEMU running the image: create reads a point-in-time blocks snapshot through it (or an internal one with --vm-state); restore, delete, list and export use the VM\'s own view [default: the config\'s disk entry, while the image is in use]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l node -d 'With --qmp: the image\'s block node [default: the format node whose file is IMAGE]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l domain -d 'The libvirt domain that runs the image: create reads it live through libvirt\'s backup API, restore refuses while it runs (or stops it with --stop) [default: the config\'s disk entry, else the domain whose QEMU holds the image]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l connect -d 'libvirt\'s URI, as virsh -c takes it [default: the config\'s disk entry, else virsh\'s: $LIBVIRT_DEFAULT_URI, else qemu:///system for root]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l vm-state-disk -d 'With --vm-state: save the VM state into this other qcow2 image of the VM [default: IMAGE]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l nbd-server -d 'With --qmp: the unix socket of the NBD server this QEMU already runs (it runs at most one)' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l guest-agent -d 'The VM\'s qemu-guest-agent socket, for --freeze' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l target -d 'With --domain: which of its disks, by target (vda, sdb) [default: its only disk]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l block-size -d 'Block size of the blocks method, fixed at the disk\'s first snapshot' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -s r -l recipient -d 'Encrypt blocks to this age recipient (age1… or ssh public key; repeatable; fixed at the first snapshot)' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -s R -l recipients-file -d 'Encrypt blocks to the recipients in FILE (repeatable)' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l before -d 'Snapshot, then run CMD (sh -c); if it fails, say how to roll back' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l all -d 'Snapshot every disk in the config\'s "disks", each through its own QMP socket or libvirt domain when it runs (one failing does not stop the rest)'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l overlay -d 'Same as --method overlay'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l require-stopped -d 'Fail (exit 75) when a process has the image open: no snapshot through its QEMU, none read as it changes'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l vm-state -d 'With --qmp or a running libvirt domain: an internal snapshot holding the VM\'s memory and device state too, as savevm makes (the guest pauses for the save; libvirt: virsh snapshot-create-as)'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l freeze -d 'With --qmp or a libvirt domain: freeze the guest\'s filesystems for the instant of the snapshot (application-consistent; libvirt: the backup\'s --quiesce)'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -l rollback-on-failure -d 'With --before: when CMD fails, restore the snapshot (only when no process has the image open)'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -s v -l verbose -d 'Print more detail'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand create" -s h -l help -d 'Print help'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand list" -l qmp -d 'QMP socket of the QEMU running the image: create reads a point-in-time blocks snapshot through it (or an internal one with --vm-state); restore, delete, list and export use the VM\'s own view [default: the config\'s disk entry, while the image is in use]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand list" -l node -d 'With --qmp: the image\'s block node [default: the format node whose file is IMAGE]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand list" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand list" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand list" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand list" -s v -l verbose -d 'Print more detail'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand list" -s h -l help -d 'Print help'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand show" -l qmp -d 'QMP socket of the QEMU running the image: create reads a point-in-time blocks snapshot through it (or an internal one with --vm-state); restore, delete, list and export use the VM\'s own view [default: the config\'s disk entry, while the image is in use]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand show" -l node -d 'With --qmp: the image\'s block node [default: the format node whose file is IMAGE]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand show" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand show" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand show" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand show" -s v -l verbose -d 'Print more detail'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand show" -s h -l help -d 'Print help'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -l to -d 'Write the snapshot to this new file instead of rewriting the image (blocks: sparse raw)' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -l timeout -d 'With --stop: how long the guest has to shut down' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -s i -l identity -d 'age identity file for encrypted blocks (repeatable)' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -l qmp -d 'QMP socket of the QEMU running the image: create reads a point-in-time blocks snapshot through it (or an internal one with --vm-state); restore, delete, list and export use the VM\'s own view [default: the config\'s disk entry, while the image is in use]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -l node -d 'With --qmp: the image\'s block node [default: the format node whose file is IMAGE]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -l domain -d 'The libvirt domain that runs the image: create reads it live through libvirt\'s backup API, restore refuses while it runs (or stops it with --stop) [default: the config\'s disk entry, else the domain whose QEMU holds the image]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -l connect -d 'libvirt\'s URI, as virsh -c takes it [default: the config\'s disk entry, else virsh\'s: $LIBVIRT_DEFAULT_URI, else qemu:///system for root]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -l no-undo -d 'Overwrite without first taking a snapshot of what the image holds now (before-restore-TIME, tagged pre-restore)'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -l dry-run -d 'Say what the restore would do (for a blocks snapshot: the blocks it would rewrite) and change nothing'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -l stop -d 'When a libvirt domain runs the image: shut it down (virsh shutdown), restore, and start it again'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -l force -d 'With --stop: destroy the domain (pull the plug) when it has not shut down in time'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -s v -l verbose -d 'Print more detail'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand restore" -s h -l help -d 'Print help'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand delete" -l qmp -d 'QMP socket of the QEMU running the image: create reads a point-in-time blocks snapshot through it (or an internal one with --vm-state); restore, delete, list and export use the VM\'s own view [default: the config\'s disk entry, while the image is in use]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand delete" -l node -d 'With --qmp: the image\'s block node [default: the format node whose file is IMAGE]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand delete" -l domain -d 'The libvirt domain that runs the image: create reads it live through libvirt\'s backup API, restore refuses while it runs (or stops it with --stop) [default: the config\'s disk entry, else the domain whose QEMU holds the image]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand delete" -l connect -d 'libvirt\'s URI, as virsh -c takes it [default: the config\'s disk entry, else virsh\'s: $LIBVIRT_DEFAULT_URI, else qemu:///system for root]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand delete" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand delete" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand delete" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand delete" -s v -l verbose -d 'Print more detail'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand delete" -s h -l help -d 'Print help'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand export" -s r -l recipient -d 'Encrypt the file as a whole to this age recipient (age1… or ssh public key; repeatable); the name ends in .age' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand export" -s R -l recipients-file -d 'Encrypt to the recipients in FILE (repeatable)' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand export" -s i -l identity -d 'age identity file for encrypted blocks (repeatable)' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand export" -l qmp -d 'QMP socket of the QEMU running the image: create reads a point-in-time blocks snapshot through it (or an internal one with --vm-state); restore, delete, list and export use the VM\'s own view [default: the config\'s disk entry, while the image is in use]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand export" -l node -d 'With --qmp: the image\'s block node [default: the format node whose file is IMAGE]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand export" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand export" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand export" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand export" -s v -l verbose -d 'Print more detail'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand export" -s h -l help -d 'Print help'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand verify" -s i -l identity -d 'age identity file for encrypted blocks (repeatable)' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand verify" -l qmp -d 'QMP socket of the QEMU running the image: create reads a point-in-time blocks snapshot through it (or an internal one with --vm-state); restore, delete, list and export use the VM\'s own view [default: the config\'s disk entry, while the image is in use]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand verify" -l node -d 'With --qmp: the image\'s block node [default: the format node whose file is IMAGE]' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand verify" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand verify" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand verify" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand verify" -s v -l verbose -d 'Print more detail'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand verify" -s h -l help -d 'Print help'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand serve" -l socket -d 'The unix socket to listen on [default: $XDG_RUNTIME_DIR/snap-disk-DISK-NAME.nbd, else in /tmp]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand serve" -l from -d 'Read the snapshot at a destination: a configured name, a URL (s3://, gs://, az://) or a folder' -r
complete -c snap-disk -n "__fish_snap_disk_using_subcommand serve" -l cache -d 'Keep blocks fetched from a bucket here, for the next read and the next server [default: ~/.cache/snap/serve/DISK]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand serve" -s i -l identity -d 'age identity file for encrypted blocks (repeatable)' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand serve" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand serve" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand serve" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand serve" -s v -l verbose -d 'Print more detail'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand serve" -s h -l help -d 'Print help'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand commit" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand commit" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand commit" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand commit" -s v -l verbose -d 'Print more detail'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand commit" -s h -l help -d 'Print help'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand compact" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand compact" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-disk -n "__fish_snap_disk_using_subcommand compact" -l drop-snapshots -d 'Drop the image\'s internal snapshots that were not exported (a convert cannot keep them)'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand compact" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand compact" -s v -l verbose -d 'Print more detail'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand compact" -s h -l help -d 'Print help'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand help; and not __fish_seen_subcommand_from create list show restore delete export verify serve commit compact help" -f -a "create" -d 'Snapshot an image'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand help; and not __fish_seen_subcommand_from create list show restore delete export verify serve commit compact help" -f -a "list" -d 'List the snapshots of one disk or of every disk'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand help; and not __fish_seen_subcommand_from create list show restore delete export verify serve commit compact help" -f -a "show" -d 'Show one snapshot in detail'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand help; and not __fish_seen_subcommand_from create list show restore delete export verify serve commit compact help" -f -a "restore" -d 'Bring the image back to a snapshot (or write the snapshot to a new file)'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand help; and not __fish_seen_subcommand_from create list show restore delete export verify serve commit compact help" -f -a "delete" -d 'Delete snapshots'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand help; and not __fish_seen_subcommand_from create list show restore delete export verify serve commit compact help" -f -a "export" -d 'Write a snapshot as a standalone image, by the name\'s suffix (.qcow2.zst, .raw.gz, .vhdx, …), optionally age-encrypted'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand help; and not __fish_seen_subcommand_from create list show restore delete export verify serve commit compact help" -f -a "verify" -d 'Check that snapshots are intact: every block there and matching its sha256, chains whole'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand help; and not __fish_seen_subcommand_from create list show restore delete export verify serve commit compact help" -f -a "serve" -d 'Export a blocks snapshot read-only over NBD on a unix socket, to boot a VM from it at once'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand help; and not __fish_seen_subcommand_from create list show restore delete export verify serve commit compact help" -f -a "commit" -d 'Fold an overlay chain back into one image (its overlay snapshots are gone after)'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand help; and not __fish_seen_subcommand_from create list show restore delete export verify serve commit compact help" -f -a "compact" -d 'Give back the space a stopped qcow2 image no longer uses: a new copy, proved equal, swapped in'
complete -c snap-disk -n "__fish_snap_disk_using_subcommand help; and not __fish_seen_subcommand_from create list show restore delete export verify serve commit compact help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
