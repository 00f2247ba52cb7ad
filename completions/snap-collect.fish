complete -c snap-collect -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json]' -r -F
complete -c snap-collect -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-collect -l set -d 'Collect only this configured set (repeatable)' -r
complete -c snap-collect -s n -l name -d 'Collect PATH... as an ad-hoc set with this name, without a config' -r
complete -c snap-collect -s e -l exclude -d 'Exclude what matches this gitignore-style pattern (repeatable)' -r
complete -c snap-collect -l tag -d 'Add a tag to the snapshot record (repeatable)' -r
complete -c snap-collect -l description -d 'A description for the snapshot record' -r
complete -c snap-collect -l min-free -d 'Free space the store\'s filesystem must keep, e.g. 2GiB or 5% [default: 1GiB or 5%, whichever is smaller]' -r
complete -c snap-collect -l checksum -d 'Compare file contents (SHA-256) with the previous snapshot, not only size, mtime, mode and owner'
complete -c snap-collect -s x -l one-file-system -d 'Do not cross filesystem boundaries inside a source'
complete -c snap-collect -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-collect -s v -l verbose -d 'Name every file copied'
complete -c snap-collect -s h -l help -d 'Print help (see more with \'--help\')'
complete -c snap-collect -s V -l version -d 'Print version'
