complete -c snap-pack -l snapshot -d 'A snapshot to pack: SET/ID, SET/latest, an ID, or the path of a snapshot or its .json (repeatable; default: records on stdin)' -r
complete -c snap-pack -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-pack -s s -l store -d 'Store directory, for --snapshot names [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-pack -s o -l out -d 'Write archives under DIR/<set>/ instead of <store>/archives/<set>/' -r -F
complete -c snap-pack -l compression -d 'Compression of the tar stream' -r
complete -c snap-pack -s l -l level -d 'Compression level (zstd 1-19, gzip 1-9)' -r
complete -c snap-pack -l threads -d 'zstd worker threads [default: one per CPU]' -r
complete -c snap-pack -s r -l recipient -d 'Encrypt to this age recipient (age1… or an ssh public key; repeatable)' -r
complete -c snap-pack -s R -l recipients-file -d 'Encrypt to the recipients listed in FILE, one a line (repeatable)' -r -F
complete -c snap-pack -l passphrase-file -d 'Encrypt with the passphrase on the first line of FILE (age scrypt); $SNAP_PASSPHRASE also does' -r -F
complete -c snap-pack -l full-every -d 'With --incremental, make a full archive once a chain has N archives (0: never)' -r
complete -c snap-pack -l min-free -d 'Free space the archive folder\'s filesystem must keep, e.g. 2GiB or 5% [default: without --out the config\'s collect.min_free, else 1GiB or 5%, whichever is smaller]' -r
complete -c snap-pack -l latest -d 'Pack the newest snapshot of every set in the store (one already packed is left as it is)'
complete -c snap-pack -s i -l incremental -d 'Pack only the files changed since the set\'s previous archive (its `base`)'
complete -c snap-pack -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-pack -s v -l verbose -d 'Name every file packed'
complete -c snap-pack -s h -l help -d 'Print help (see more with \'--help\')'
complete -c snap-pack -s V -l version -d 'Print version'
