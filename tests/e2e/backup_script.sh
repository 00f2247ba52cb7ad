#!/usr/bin/env bash
# snap-backup without --due, the two-phase backup from cron/systemd/udev: the
# whole pipeline lands an archive on the configured drive folder; the
# collect-only phase adds a snapshot and nothing else; the external-only
# phase packs it and pushes it; an absent drive is exit 75 and the notify
# hook hears each outcome; a failing stage's exit code comes out as pipefail would.
set -eu
. "$(dirname "$0")/lib.sh"

mkdir -p "$WORK/src" "$WORK/drive"
printf 'one\n' > "$WORK/src/a.txt"
export HOME=$WORK/home
config() {
    cat > "$WORK/config.json" <<JSON
{"store": "$WORK/store",
 "backup_sets": [{"name": "d", "sources": ["$WORK/src"]}],
 "collect": {"min_free": "0"},
 "destinations": [$1]}
JSON
}
config "{\"name\": \"drive\", \"path\": \"$WORK/drive\", \"min_free\": \"0\"}"
hook="echo \"\$SNAP_EVENT \$SNAP_EXIT \$SNAP_TOOL\" >> $WORK/hook.txt"
archives() { find "$WORK/drive" -name '*.json' | wc -l; }
snapshots() { find "$WORK/store/sets/d" -maxdepth 1 -name '*.json' | wc -l; }

snap-backup --config "$WORK/config.json" --notify "$hook" > all.jsonl
[ "$(jq -r .kind all.jsonl)" = pushed ] || fail "whole backup: $(cat all.jsonl)"
[ "$(archives)" = 1 ] || fail "the drive has $(archives) archives"
(cd "$WORK/drive/d" && sha256sum -c --quiet ./*.sha256) || fail "sha256sum -c on the drive"

sleep 1.1
printf 'two\n' > "$WORK/src/b.txt"
snap-backup --collect-only --config "$WORK/config.json" > collect.jsonl
[ "$(jq -r .kind collect.jsonl)" = snapshot ] || fail "collect-only: $(cat collect.jsonl)"
[ "$(snapshots)" = 2 ] || fail "$(snapshots) snapshots"
[ "$(archives)" = 1 ] || fail "collect-only pushed something"

config '{"name": "t9", "uuid": "0000-NOPE", "path": "b"}'
rc=0
snap-backup --external-only --config "$WORK/config.json" --notify "$hook" > /dev/null 2> absent.err || rc=$?
[ "$rc" = 75 ] || fail "absent drive gave exit $rc: $(cat absent.err)"
grep -q 'no drive with UUID 0000-NOPE' absent.err || fail "$(cat absent.err)"

config "{\"name\": \"drive\", \"path\": \"$WORK/drive\", \"min_free\": \"0\"}"
snap-backup --external-only --config "$WORK/config.json" --notify "$hook" > ext.jsonl
[ "$(archives)" = 2 ] || fail "external-only left $(archives) archives on the drive"
snap-restore --config "$WORK/config.json" --from drive restore d/latest --to "$WORK/r" > /dev/null
diff -r "$WORK/src" "$WORK/r$WORK/src" || fail "restore from the drive differs"

# A stage before the push that fails gives its own exit code, and the hook hears it.
cat > "$WORK/config.json" <<JSON
{"store": "$WORK/store", "backup_sets": [{"name": "d", "sources": ["relative/path"]}]}
JSON
rc=0
snap-backup --collect-only --config "$WORK/config.json" --notify "$hook" > /dev/null 2>&1 || rc=$?
[ "$rc" = 78 ] || fail "a bad config gave exit $rc"

printf 'success 0 snap-push\nmedia-missing 75 snap-push\nsuccess 0 snap-push\nfailure 78 snap-backup\n' > want.txt
diff want.txt "$WORK/hook.txt" || fail "the hook heard something else"
echo "ok: snap-backup runs both phases, each phase alone, and reports absent media"
