complete -c snap-push -s d -l dest -d 'A destination: path, uuid://, label://, s3://, gs://, az://, sftp:// URL, rclone:REMOTE:PATH, or a configured name (repeatable) [default: the config\'s destinations]' -r
complete -c snap-push -s f -l file -d 'An archive to push (its data file or its .json record), or a disk snapshot (its record, disks/DISK/NAME.json) (repeatable; default: records on stdin)' -r -F
complete -c snap-push -l set -d 'With --all, only the archives of this set' -r
complete -c snap-push -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-push -s s -l store -d 'Store directory, for --all [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-push -l bwlimit -d 'Limit the sending rate, in bytes per second: 500K, 10M (binary units)' -r
complete -c snap-push -l parallel -d 'Parts of one file sent at once to a bucket' -r
complete -c snap-push -l part-size -d 'Size of the parts large files are sent in (at least 5M for S3) [default: 8M to buckets, 16M to folders]' -r
complete -c snap-push -l retries -d 'Retries of a failed request to a bucket, with exponential backoff' -r
complete -c snap-push -l retry-timeout -d 'Give up retrying a request after this many seconds' -r
complete -c snap-push -l min-free -d 'Free space a folder destination must keep after the push, e.g. 2GiB or 5% [default: the destination\'s min_free, else 1GiB or 5%, whichever is smaller]' -r
complete -c snap-push -l notify -d 'Run CMD (with sh -c) at the end with SNAP_EVENT=success|failure|media-missing|low-disk and SNAP_MESSAGE [default: the config\'s "notify"]' -r
complete -c snap-push -l profile -d 'Publish this machine\'s profile NAME to each --dest: the shareable part of the config (sets, schedule, retention, destinations without secrets, notify, disks), merged with what changed there since this machine last took or published it' -r
complete -c snap-push -l state-dir -d 'Where resume journals are kept [default: $XDG_STATE_HOME/snap/push, else ~/.local/state/snap/push]' -r -F
complete -c snap-push -s a -l all -d 'Push every archive in the store that a destination lacks'
complete -c snap-push -l verify -d 'Read every object back from the destination and check its sha256'
complete -c snap-push -s n -l dry-run -d 'Say what would be sent and how many bytes; send nothing'
complete -c snap-push -l no-notify -d 'Run no notify command, not even the config\'s (snap-backup --due notifies for each job itself)'
complete -c snap-push -l mine -d 'With --profile: where a key changed both here and there, keep this machine\'s'
complete -c snap-push -l theirs -d 'With --profile: where a key changed both here and there, take the destination\'s'
complete -c snap-push -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-push -s v -l verbose -d 'Say what happens to each archive at each destination'
complete -c snap-push -s h -l help -d 'Print help (see more with \'--help\')'
complete -c snap-push -s V -l version -d 'Print version'
