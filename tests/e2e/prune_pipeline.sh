#!/usr/bin/env bash
# Retention end to end: five backups (collect | pack --incremental | push to a
# folder "drive"), then the planning document's policy from the config (keep 3
# local, 2 external). The store keeps its 3 newest trees, `du` agrees with the
# bytes reported freed, the drive keeps 2 archives plus the bases they need,
# passes `sha256sum -c` alone, and the newest restores equal to the source.
set -eu
. "$(dirname "$0")/lib.sh"

src=$WORK/src
mkdir -p "$src" "$WORK/usb"
for f in $(seq 1 50); do head -c 20000 /dev/urandom > "$src/f$f"; done
cat > "$WORK/cfg.json" <<JSON
{ "store": "$WORK/store",
  "backup_sets": [{ "name": "home", "sources": ["$src"] }],
  "destinations": [{ "name": "usb", "path": "$WORK/usb", "min_free": "0" }],
  "retention": { "local": 3, "external": 2 } }
JSON
cfg="--config $WORK/cfg.json"
for i in 1 2 3 4 5; do
    head -c 30000 /dev/urandom > "$src/changed$i"
    snap-collect $cfg --min-free 0 -q | snap-pack $cfg --min-free 0 --incremental -q \
        | snap-push $cfg -q > "pushed$i.json"
done
[ "$(ls "$WORK/usb/home"/*.json | wc -l)" = 5 ] || fail "not 5 archives pushed"

snap-prune $cfg --dry-run > plan.json
[ "$(ls "$WORK/store/sets/home"/*.json | wc -l)" = 5 ] || fail "the dry run removed something"
du_before=$(du -sB1 "$WORK/store/sets" | cut -f1)
snap-prune $cfg > local.json
du_after=$(du -sB1 "$WORK/store/sets" | cut -f1)
[ "$(jq -s '[.[] | select(.what == "snapshot" and .action == "keep")] | length' local.json)" = 3 ] \
    || fail "store: $(cat local.json)"
freed=$(jq -s '[.[] | select(.what == "snapshot") | .freed // 0] | add' local.json)
[ "$freed" = "$((du_before - du_after))" ] || fail "reported freed $freed, du says $((du_before - du_after))"
[ "$(jq -s '[.[] | select(.what == "snapshot") | .freed // 0] | add' plan.json)" = "$freed" ] \
    || fail "the dry run predicted other bytes than were freed"
newest=$(jq -r 'select(.what == "snapshot") | .id' local.json | tail -1)
[ "$(readlink "$WORK/store/sets/home/latest")" = "$newest" ] || fail "latest moved"

# Every archive is incremental on the one before, so keeping the last 2 keeps the whole chain.
snap-prune $cfg --dest usb > usb.json
[ "$(jq -s '[.[] | select(.action == "remove")] | length' usb.json)" = 0 ] || fail "a base was removed: $(cat usb.json)"
jq -e -s '.[0].reasons[0] | startswith("base of")' usb.json > /dev/null || fail "oldest not kept as a base"
(cd "$WORK/usb/home" && sha256sum -c --quiet ./*.sha256) || fail "sha256sum -c"

# Even --keep-last 1 keeps the chain the newest archive needs.
snap-prune $cfg --dest usb --keep-last 1 > one.json
[ "$(jq -s '[.[] | select(.action == "keep")] | length' one.json)" = 5 ] || fail "chain broken: $(cat one.json)"
snap-restore restore --from "$WORK/usb" home/latest --to "$WORK/r" > /dev/null
diff -r "$src" "$WORK/r$src" || fail "restore differs"
