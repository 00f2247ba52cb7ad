complete -c snap-backup -l wait -d 'When the destination is absent, try again every 5 s for up to SECS (a drive is mounted a little after it is plugged in)' -r
complete -c snap-backup -l notify -d 'Run CMD with SNAP_EVENT=success|failure|media-missing|low-disk and the job in its environment [default: the config\'s "notify"]' -r
complete -c snap-backup -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json]' -r -F
complete -c snap-backup -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-backup -l due -d 'Run what the config\'s schedule says is due, and nothing else'
complete -c snap-backup -s n -l dry-run -d 'With --due: print what is due and why, run nothing'
complete -c snap-backup -l collect-only -d 'Phase 1 only: collect every set into the store'
complete -c snap-backup -l external-only -d 'Phase 2 only: pack the newest snapshots and push every archive a destination lacks'
complete -c snap-backup -l pre-apt -d 'apt\'s hook: a rollback point (sets and disks, tagged pre-apt) before dpkg runs; reads apt\'s package list on stdin; always exits 0'
complete -c snap-backup -s i -l incremental -d 'Pack incrementals (without --due; --due follows schedule.full)'
complete -c snap-backup -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-backup -s v -l verbose -d 'Print more on stderr'
complete -c snap-backup -s h -l help -d 'Print help (see more with \'--help\')'
complete -c snap-backup -s V -l version -d 'Print version'
