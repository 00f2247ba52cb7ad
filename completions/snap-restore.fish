# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_snap_restore_global_optspecs
    string join \n c/config= s/store= from= i/identity= passphrase-file= allow-unsigned local-time q/quiet v/verbose h/help V/version
end

function __fish_snap_restore_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_snap_restore_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_snap_restore_using_subcommand
    set -l cmd (__fish_snap_restore_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c snap-restore -n "__fish_snap_restore_needs_command" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_needs_command" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_needs_command" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_needs_command" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_needs_command" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_needs_command" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -s V -l version -d 'Print version'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "profiles" -d 'The profiles kept at a destination (snap-push --profile publishes them), newest version of each'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "profile" -d 'Take a profile from a destination (`profile take NAME --from WHERE`)'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "list" -d 'List the snapshots and archives of the store, or of WHERE (a store, a folder, a drive or a bucket)'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "show" -d 'Show a snapshot or archive: its record, sizes, compression ratio, chain'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "diff" -d 'What changed between two snapshots or archives: + added, - removed, M modified, T type, U metadata'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "verify" -d 'Read every byte of snapshots or archives and check them against their sha256s (no NAME: every snapshot and archive)'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "timeline" -d 'Every snapshot, archive and disk snapshot of the store, its health and what retention would do, as one self-contained HTML page'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "serve" -d 'The timeline, live, on a local web server: diffs, file history and search; restores, deletes and edits with --allow-changes'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "pin" -d 'Keep a snapshot, archive or disk snapshot (SET/ID, disks/DISK/NAME) from every retention rule'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "tag" -d 'Add or remove tags of a snapshot, archive or disk snapshot (snap-prune --keep-tag keeps by them)'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "describe" -d 'Set the description of a snapshot, archive or disk snapshot (no TEXT: clear it)'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "unpin" -d 'Remove a pin: the snapshot is subject to the retention rules again'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "import" -d 'Add an archive snap did not make (tar, tar.gz, tar.zst, maybe age) to the store, with an index and sha256'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "cat" -d 'Write one file of a snapshot or archive to stdout, checked against its sha256 as it goes out (a mismatch is exit 65, after the bytes); from a seekable archive only the frames holding it are read'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "restore" -d 'Restore a snapshot or archive (or any tar) into a folder'
complete -c snap-restore -n "__fish_snap_restore_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profiles" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profiles" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profiles" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profiles" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profiles" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profiles" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profiles" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profiles" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profiles" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profiles" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -f -a "take" -d 'Take profile NAME from --from into this machine\'s config: its sets, schedule, retention, destinations, notify and disks (this host\'s block of it laid over them), merged with what changed here since the last take'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and not __fish_seen_subcommand_from take help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -l sets -d 'Take only these sets (comma-separated), and nothing else' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -l mine -d 'Where a key changed both here and there, keep this machine\'s'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -l theirs -d 'Where a key changed both here and there, take the destination\'s'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from take" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "take" -d 'Take profile NAME from --from into this machine\'s config: its sets, schedule, retention, destinations, notify and disks (this host\'s block of it laid over them), merged with what changed here since the last take'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -l set -d 'Only this set' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -l host -d 'Only what this machine made (the HOST column: records\' created_by, or host)' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -l json -d 'Print the records as JSON lines'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand list" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -l archive -d 'NAME means an archive even where a snapshot has the same id'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -l json -d 'Print the record as JSON'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand show" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -l archive -d 'Names mean archives even where snapshots have the same ids'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -l json -d 'Print one JSON line per change'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand diff" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand verify" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand verify" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand verify" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand verify" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand verify" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand verify" -l archive -d 'Names mean archives even where snapshots have the same ids'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand verify" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand verify" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand verify" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand verify" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand verify" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -l html -d 'Write the page here (atomically) [default: stdout]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -l no-pictures -d 'Leave out the pictures (growth, added bytes, verify age, coverage, costs): a smaller page'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand timeline" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -l listen -d 'Where to listen (loopback unless --allow-remote)' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -l allow-remote -d 'Allow a --listen address other machines can reach (a warning is printed)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -l allow-changes -d 'Allow restoring, deleting, tagging, describing, pinning and unpinning from the page (read-only otherwise)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand serve" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -s r -l reason -d 'Why (shown by `show`)' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -l archive -d 'NAME means an archive even where a snapshot has the same id'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand pin" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -l add -d 'Add this tag (repeatable)' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -l remove -d 'Remove this tag (repeatable)' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -l archive -d 'NAME means an archive even where a snapshot has the same id'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand tag" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand describe" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand describe" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand describe" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand describe" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand describe" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand describe" -l archive -d 'NAME means an archive even where a snapshot has the same id'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand describe" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand describe" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand describe" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand describe" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand describe" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand unpin" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand unpin" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand unpin" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand unpin" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand unpin" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand unpin" -l archive -d 'NAME means an archive even where a snapshot has the same id'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand unpin" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand unpin" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand unpin" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand unpin" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand unpin" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -l set -d 'The set it belongs to' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -l id -d 'Its id [default: from the file\'s mtime]' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -s d -l description -d 'What it is, e.g. "WSL Ubuntu before the upgrade" (kept in the record and the catalog)' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -s t -l tag -d 'Tag it (repeatable; snap-prune --keep-tag keeps tagged ones)' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand import" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand cat" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand cat" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand cat" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand cat" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand cat" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand cat" -l archive -d 'NAME means an archive even where a snapshot has the same id'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand cat" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand cat" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand cat" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand cat" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand cat" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -s t -l to -d 'The folder to restore into (created if missing)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -s p -l path -d 'Restore only this path inside the snapshot, e.g. home/me/docs (repeatable)' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l host -d 'Only what HOST made: NAME (SET/latest, a date) is found among its snapshots and archives, as at a destination several machines share' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l from -d 'Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination\'s name' -r
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -s i -l identity -d 'age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l passphrase-file -d 'Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does' -r -F
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l overwrite -d 'Replace files that exist in the target with other content; what is replaced is snapshot first into the store (set pre-restore) unless --no-undo'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l archive -d 'NAME means an archive even where a snapshot has the same id'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -s n -l dry-run -l preview -d 'Write nothing: list what the restore would create, replace, refuse, or give its attributes again, and what the target\'s folders hold that the snapshot lacks (kept)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l no-xattrs -d 'Set no extended attributes (user.*, trusted.*, security.*, capabilities); ACLs still are'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l no-acls -d 'Set no POSIX ACLs'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l numeric-owner -d 'Give entries the recorded uid and gid, not the ids their owner and group names have here'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l delete -d 'Remove what the restored folders hold that the snapshot lacks (as rsync --delete), after a restore without errors; the folders above the set\'s sources are not restored folders'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l no-undo -d 'Take no undo snapshot of what --overwrite replaces and --delete removes'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l full-paths -d 'With --to ~: keep the snapshot\'s whole paths (home/alice/.config lands in ~/home/alice/.config) instead of putting the home folder it was made in onto ~'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l allow-unsigned -d 'Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine\'s, not yet in the list), with a warning for each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -l local-time -d 'Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine\'s time zone, not UTC'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -s v -l verbose -d 'Name every file restored'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand restore" -s h -l help -d 'Print help'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "profiles" -d 'The profiles kept at a destination (snap-push --profile publishes them), newest version of each'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "profile" -d 'Take a profile from a destination (`profile take NAME --from WHERE`)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "list" -d 'List the snapshots and archives of the store, or of WHERE (a store, a folder, a drive or a bucket)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "show" -d 'Show a snapshot or archive: its record, sizes, compression ratio, chain'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "diff" -d 'What changed between two snapshots or archives: + added, - removed, M modified, T type, U metadata'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "verify" -d 'Read every byte of snapshots or archives and check them against their sha256s (no NAME: every snapshot and archive)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "timeline" -d 'Every snapshot, archive and disk snapshot of the store, its health and what retention would do, as one self-contained HTML page'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "serve" -d 'The timeline, live, on a local web server: diffs, file history and search; restores, deletes and edits with --allow-changes'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "pin" -d 'Keep a snapshot, archive or disk snapshot (SET/ID, disks/DISK/NAME) from every retention rule'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "tag" -d 'Add or remove tags of a snapshot, archive or disk snapshot (snap-prune --keep-tag keeps by them)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "describe" -d 'Set the description of a snapshot, archive or disk snapshot (no TEXT: clear it)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "unpin" -d 'Remove a pin: the snapshot is subject to the retention rules again'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "import" -d 'Add an archive snap did not make (tar, tar.gz, tar.zst, maybe age) to the store, with an index and sha256'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "cat" -d 'Write one file of a snapshot or archive to stdout, checked against its sha256 as it goes out (a mismatch is exit 65, after the bytes); from a seekable archive only the frames holding it are read'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "restore" -d 'Restore a snapshot or archive (or any tar) into a folder'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and not __fish_seen_subcommand_from profiles profile list show diff verify timeline serve pin tag describe unpin import cat restore help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c snap-restore -n "__fish_snap_restore_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "take" -d 'Take profile NAME from --from into this machine\'s config: its sets, schedule, retention, destinations, notify and disks (this host\'s block of it laid over them), merged with what changed here since the last take'
