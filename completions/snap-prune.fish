complete -c snap-prune -s d -l dest -d 'Prune archives at this destination: path, uuid://, label://, s3://, gs://, az://, sftp:// URL, rclone:REMOTE:PATH, or a configured name (repeatable) [default: the store]' -r
complete -c snap-prune -s s -l store -d 'Store directory [default: $SNAP_STORE, else $DBACKUP, else the config\'s "store", else ~/.local/share/snap]' -r -F
complete -c snap-prune -l set -d 'Only this set' -r
complete -c snap-prune -l keep-last -d 'Keep the N newest snapshots' -r
complete -c snap-prune -l keep-hourly -d 'Keep the newest snapshot of each of the last N hours' -r
complete -c snap-prune -l keep-daily -d 'Keep the newest snapshot of each of the last N days' -r
complete -c snap-prune -l keep-weekly -d 'Keep the newest snapshot of each of the last N ISO weeks' -r
complete -c snap-prune -l keep-monthly -d 'Keep the newest snapshot of each of the last N months' -r
complete -c snap-prune -l keep-yearly -d 'Keep the newest snapshot of each of the last N years' -r
complete -c snap-prune -l keep-within -d 'Keep every snapshot newer than SPAN before the newest one: 30d, 6m, 1y6m, 12h' -r
complete -c snap-prune -l keep-within-hourly -d 'Within SPAN of the newest snapshot, keep the newest of each hour' -r
complete -c snap-prune -l keep-within-daily -d 'Within SPAN of the newest snapshot, keep the newest of each day' -r
complete -c snap-prune -l keep-within-weekly -d 'Within SPAN of the newest snapshot, keep the newest of each ISO week' -r
complete -c snap-prune -l keep-within-monthly -d 'Within SPAN of the newest snapshot, keep the newest of each month' -r
complete -c snap-prune -l keep-within-yearly -d 'Within SPAN of the newest snapshot, keep the newest of each year' -r
complete -c snap-prune -l keep-tag -d 'Keep snapshots with these tags (a,b: all of them; repeatable: any of the lists)' -r
complete -c snap-prune -l tag -d 'Only snapshots having all these tags (comma-separated; repeatable: any one list) are judged by the rules; the rest are left alone (restic\'s forget --tag)' -r
complete -c snap-prune -l forget -d 'Remove exactly this one (SET/ID, or disks/DISK/NAME; repeatable) instead of applying rules; a pinned one, or a base an archive that stays needs, is refused' -r
complete -c snap-prune -s c -l config -d 'Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]' -r -F
complete -c snap-prune -l state-dir -d 'Where this machine\'s own destination locks are kept, shared with snap-push (other machines are kept out by locks at the destination) [default: $XDG_STATE_HOME/snap/push, else ~/.local/state/snap/push]' -r -F
complete -c snap-prune -l include-foreign -d 'Apply the rules also to internal snapshots snap-disk did not make (qemu-img, savevm, virsh) in the store\'s disk images; without it they are kept'
complete -c snap-prune -l archive -d 'With --forget, in the store: the names are archives (archives/SET/ID), not snapshot trees'
complete -c snap-prune -s n -l dry-run -d 'Print the plan and what it would free; remove nothing'
complete -c snap-prune -l break-lock -d 'At a destination, first remove the locks of other processes that you know are gone: stale ones, unreadable ones, and those of other machines however recent (each is named on stderr)'
complete -c snap-prune -s q -l quiet -d 'Print only warnings and errors on stderr'
complete -c snap-prune -s v -l verbose -d 'Print every decision, kept ones too'
complete -c snap-prune -s h -l help -d 'Print help (see more with \'--help\')'
complete -c snap-prune -s V -l version -d 'Print version'
