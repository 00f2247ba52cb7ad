#!/usr/bin/env bash
# Two machines, one drive, one profile (issue 40). "laptop" publishes its
# setup; "desktop", with only a store and the drive in its config, takes it:
# the sets (sources under ~ as the desktop's own), the schedule, and its own
# block of the machines overrides; nothing machine-specific travels. Then
# each machine backs up its own ~/.config to the drive, and a restore with
# --host laptop takes the laptop's newest, though the desktop's is newer;
# carried onto the desktop's home it is previewed, applied and undone.
set -eu
. "$(dirname "$0")/lib.sh"
export PATH="$PATH:/usr/sbin:/sbin"

[ -e /etc/machine-id ] || fail "needs /etc/machine-id to stand in for other machines"
usb=$WORK/usb
mkdir -p "$usb"
for m in laptop desktop; do
    mkdir -p "$WORK/$m/home/.config/app"
    echo "$m settings" > "$WORK/$m/home/.config/app/settings.ini"
done

cat > laptop.json <<JSON
{ "store": "$WORK/laptop/store",
  "backup_sets": [{"name": "config", "sources": ["~/.config"]}],
  "schedule": {"incremental": "hourly"},
  "destinations": [{"name": "usb", "path": "$usb",
                    "options": {"secret_access_key": "LAPTOP-SECRET"}}] }
JSON
cat > desktop.json <<JSON
{ "store": "$WORK/desktop/store",
  "destinations": [{"name": "usb", "path": "$usb"}] }
JSON

HOME=$WORK/laptop/home machine laptop snap-push -c laptop.json --profile home --dest usb 2> publish.err \
    || fail "publish: $(cat publish.err)"
grep -q "published profile home version 1 to usb" publish.err || fail "publish: $(cat publish.err)"
stored=$usb/.snap/profiles/home/00000001.json
for secret in LAPTOP-SECRET "$WORK/laptop/store" "$WORK/laptop/home" "$usb"; do
    if grep -qF "$secret" "$stored"; then fail "$secret travelled: $(cat "$stored")"; fi
done
[ "$(jq -r .published.host "$stored")" = laptop ] || fail "published by: $(jq .published "$stored")"

# A machines block (as a user would add it): the desktop backs up daily.
jq '.machines = {"desktop": {"schedule": {"incremental": "daily"}}}' "$stored" \
    > "$usb/.snap/profiles/home/00000002.json"

HOME=$WORK/desktop/home machine desktop snap-restore -c desktop.json profiles usb > listed.txt
grep -q "^home  version 2  published by laptop at .*  sets: config  machines: desktop$" listed.txt \
    || fail "profiles: $(cat listed.txt)"
HOME=$WORK/desktop/home machine desktop snap-restore -c desktop.json profile take home --from usb 2> take.err \
    || fail "take: $(cat take.err)"
[ "$(jq -c '.backup_sets[0].sources' desktop.json)" = '["~/.config"]' ] || fail "sets: $(cat desktop.json)"
[ "$(jq -r '.schedule.incremental' desktop.json)" = daily ] || fail "the desktop's block: $(cat desktop.json)"
[ "$(jq -r '.store' desktop.json)" = "$WORK/desktop/store" ] || fail "the store: $(cat desktop.json)"
[ "$(jq -r '.destinations[0].options.secret_access_key // "none"' desktop.json)" = none ] \
    || fail "a secret arrived: $(cat desktop.json)"

# The desktop runs the plan it took: the config set is due (never collected).
HOME=$WORK/desktop/home machine desktop snap-backup -c desktop.json --due --dry-run > due.txt 2> due.err \
    || fail "due: $(cat due.err)"
grep -q "^snap-backup: collect config: due; incremental daily, never done$" due.err || fail "the taken set is not due: $(cat due.err)"

# Each machine backs up its own ~/.config with the same plan; the desktop's is newer.
for m in laptop desktop; do
    HOME=$WORK/$m/home machine "$m" snap-collect -c "$m.json" --min-free 0 -q \
        | HOME=$WORK/$m/home machine "$m" snap-pack -c "$m.json" --min-free 0 -q \
        | HOME=$WORK/$m/home machine "$m" snap-push -c "$m.json" --dest usb -q > "push.$m.json"
    sleep 1
done
snap-restore --allow-unsigned --from "$usb" restore config/latest --host laptop --to "$WORK/r" -q > restored.json \
    || fail "restore --host laptop"
got=$(cat "$WORK/r$WORK/laptop/home/.config/app/settings.ini")
[ "$got" = "laptop settings" ] || fail "--host laptop restored: $got"

# Carry the laptop's ~/.config onto the desktop's home from the drive: the
# preview (checked whole) names what it creates, replaces and keeps where it
# lands; --overwrite applies it; its undo snapshot puts the desktop's file back.
dh=$WORK/desktop/home
echo "desktop only" > "$dh/.config/app/mine.txt"
# The desktop trusts the laptop's records as the docs say: its signer's line.
cat "$WORK/laptop/home/.config/snap/allowed_signers" >> "$dh/.config/snap/allowed_signers"
cp "$dh/.config/app/settings.ini" desktop-settings.ini
carry() {
    HOME=$dh machine desktop snap-restore -c desktop.json --from usb \
        restore config/latest --host laptop --to "$dh" "$@"
}
carry --preview --overwrite 2> preview.err || fail "preview: $(cat preview.err)"
cat > preview.want <<EOF
snap-restore: ${WORK#/}/laptop/home (laptop's home) -> $dh
snap-restore: replace: .config/app/settings.ini (content, size)
snap-restore: keep: .config/app/mine.txt
snap-restore: keep: .config/snap
snap-restore: dry run into $dh: 2 same, 1 replace, 2 keep; 1 files, 16 B to write; nothing was written
EOF
diff preview.want preview.err || fail "the preview differs (above)"
cmp -s desktop-settings.ini "$dh/.config/app/settings.ini" || fail "the preview wrote"
carry --overwrite > carried.json 2> carry.err || fail "carry: $(cat carry.err)"
[ "$(cat "$dh/.config/app/settings.ini")" = "laptop settings" ] || fail "not carried: $(cat carry.err)"
[ "$(cat "$dh/.config/app/mine.txt")" = "desktop only" ] || fail "a kept file changed"
undo=$(tail -1 carried.json | jq -r .undo)
grep -qF "snap-restore: undo: $undo keeps the 1 paths this restore replaces or deletes; to put them back: snap-restore restore $undo --to ~ --overwrite" carry.err \
    || fail "the undo is not named: $(cat carry.err)"
HOME=$dh machine desktop snap-restore -c desktop.json restore "$undo" --to "$dh" --overwrite -q > /dev/null 2> undo.err \
    || fail "undo: $(cat undo.err)"
cmp desktop-settings.ini "$dh/.config/app/settings.ini" || fail "the undo did not bring the desktop's settings back"

# The same through an rclone remote over `rclone serve webdav` (the path of
# OneDrive and Dropbox): the desktop's first take of it settles the schedule
# both have with --theirs; later a key both machines changed refuses with
# its three values until --theirs, and a key one changed merges.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/dav"
rclone serve webdav --addr "127.0.0.1:$port" "$WORK/dav" > /dev/null 2>&1 &
dav=$!
trap 'kill $dav 2> /dev/null || true' EXIT
for _ in $(seq 1 100); do
    (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
    sleep 0.1
done
printf '[dav]\ntype = webdav\nurl = http://127.0.0.1:%s\nvendor = other\n' "$port" > rclone.conf
export RCLONE_CONFIG=$WORK/rclone.conf
for m in laptop desktop; do
    jq '.destinations += [{"name": "onedrive", "url": "rclone:dav:snap"}] | .notify = "ntfy:shared"' "$m.json" > "$m.tmp"
    mv "$m.tmp" "$m.json"
done
HOME=$WORK/laptop/home machine laptop snap-push -c laptop.json --profile env --dest onedrive -q \
    || fail "publish over webdav"
HOME=$WORK/desktop/home machine desktop snap-restore -c desktop.json profile take env --from onedrive --theirs -q 2> take2.err \
    || fail "take over webdav: $(cat take2.err)"
jq '.notify = "ntfy:laptop"' laptop.json > l.tmp && mv l.tmp laptop.json
HOME=$WORK/laptop/home machine laptop snap-push -c laptop.json --profile env --dest onedrive -q \
    || fail "second publish"
jq '.notify = "ntfy:desktop" | .retention = {"local": 5}' desktop.json > d.tmp && mv d.tmp desktop.json
if HOME=$WORK/desktop/home machine desktop snap-push -c desktop.json --profile env --dest onedrive 2> conflict.err; then
    fail "a key changed on both sides was published"
else
    rc=$?
fi
[ "$rc" = 75 ] || fail "conflict exit $rc: $(cat conflict.err)"
grep -q '^  notify$' conflict.err && grep -q '^    base:   "ntfy:shared"$' conflict.err \
    && grep -q '^    here  : "ntfy:desktop"$' conflict.err && grep -q '^    there : "ntfy:laptop"$' conflict.err \
    || fail "the three-way diff: $(cat conflict.err)"
HOME=$WORK/desktop/home machine desktop snap-push -c desktop.json --profile env --dest onedrive --theirs -q \
    || fail "--theirs"
[ "$(jq -r .notify desktop.json)" = ntfy:laptop ] || fail "--theirs took: $(jq .notify desktop.json)"
newest=$(ls "$WORK/dav/snap/.snap/profiles/env" | sort | tail -1)
[ "$(jq -c .config.retention "$WORK/dav/snap/.snap/profiles/env/$newest")" = '{"local":5}' ] \
    || fail "the desktop's one-sided retention was not published"
if grep -rqF LAPTOP-SECRET "$WORK/dav"; then fail "a secret reached the remote"; fi
echo ok
