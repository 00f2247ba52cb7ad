#!/usr/bin/env bash
# docs/recovery.md, run as written: a drive is filled by the usual backup
# (a data set with an incremental archive, an age-encrypted config set, a
# VM disk snapshot, and the tools copied beside them), then every ```sh
# block of the guide runs in order on a "new machine" (no store, another
# HOME), and what came back is compared with what was saved.
set -eu
. "$(dirname "$0")/lib.sh"
export PATH="$PATH:/usr/sbin:/sbin"
guide="$(cd "$(dirname "$0")/../.." && pwd)/docs/recovery.md"

# The old machine.
export HOME=$WORK/home SNAP_STORE=$WORK/store
mkdir -p "$HOME" "$WORK/src/data/photos" "$WORK/src/data/docs"
head -c 3000000 /dev/urandom > "$WORK/src/data/photos/a.jpg"
echo "notes v1" > "$WORK/src/data/docs/notes.txt"
# A big file (a database): the incremental carries only its changed blocks.
head -c 20000000 /dev/urandom > "$WORK/src/data/docs/db.bin"
[ -f /etc/fstab ] || fail "this machine has no /etc/fstab to back up"
KEY=$WORK/age-key.txt
age-keygen -o "$KEY" 2>/dev/null
recipient=$(age-keygen -y "$KEY")

snap-collect --min-free 0 -q --name data "$WORK/src/data" | snap-pack --min-free 0 -q > /dev/null
sleep 1.1
echo "notes v2" > "$WORK/src/data/docs/notes.txt"
printf 'changed in place' | dd of="$WORK/src/data/docs/db.bin" bs=1 seek=7000000 conv=notrunc status=none
head -c 100000 /dev/urandom >> "$WORK/src/data/docs/db.bin"
snap-collect --min-free 0 -q --name data "$WORK/src/data" | snap-pack --min-free 0 -q --incremental > inc.json
[ "$(jq -r .base inc.json)" != null ] || fail "the second data archive is not incremental: $(cat inc.json)"
[ "$(jq -r .bytes inc.json)" -lt 1000000 ] || fail "the incremental carries the whole big file: $(cat inc.json)"
# The system's files: the real /etc/fstab and /etc/passwd, as a user backs them up.
snap-collect --min-free 0 -q --name config /etc/fstab /etc/passwd \
    | snap-pack --min-free 0 -q --recipient "$recipient" > /dev/null

img=$WORK/vm.raw
head -c 8388608 /dev/urandom > "$img"
DRIVE=$WORK/drive DEST=$WORK/drive/backups
mkdir -p "$DEST"
snap-disk create "$img" first -q | snap-push --dest "$DEST" --min-free 0 -q > /dev/null
snap-push --all --dest "$DEST" --min-free 0 -q > /dev/null
# The guide's advice when setting up: the tools beside the backups.
mkdir -p "$DRIVE/snap-tools"
# (Hard links where the build is on the same disk: debug builds are ~250 MB each.)
for tool in snap-restore snap-push snap-disk; do
    ln -f "$(command -v $tool)" "$DRIVE/snap-tools/" 2>/dev/null || cp "$(command -v $tool)" "$DRIVE/snap-tools/"
done

# What the guide says to keep: the allowed signers, beside the age key.
SIGNERS=$WORK/allowed_signers
cp "$HOME/.config/snap/allowed_signers" "$SIGNERS"

# The new machine: the drive, the keys, and the guide.
unset SNAP_STORE
export HOME=$WORK/newhome NEW=$WORK/new DRIVE DEST KEY SIGNERS PART="${WORK#/}/src/data/photos"
mkdir -p "$HOME" "$NEW"
awk '/^```sh$/ {on = 1; next} /^```$/ {on = 0} on' "$guide" > "$WORK/guide.sh"
[ "$(grep -c . "$WORK/guide.sh")" -ge 15 ] || fail "the guide's commands were not found: $(cat "$WORK/guide.sh")"
if [ "$(id -u)" != 0 ]; then
    # Installing is for root (CI is); elsewhere the rest still runs.
    apt-get() { echo "skipped: apt-get $*"; }
fi
cd "$WORK"
set -x
. "$WORK/guide.sh"
set +x
cd "$WORK"

# What came back is what was saved.
diff -r "$WORK/src/data" "$NEW/data$WORK/src/data" || fail "data restored different"
cmp /etc/fstab "$NEW/config/etc/fstab" && cmp /etc/passwd "$NEW/config/etc/passwd" || fail "config restored different"
cmp /etc/fstab "$NEW/fstab" || fail "cat gave another fstab"
[ -f "$NEW/part/$PART/a.jpg" ] && [ ! -e "$NEW/part$WORK/src/data/docs" ] || fail "--path restored more or less than photos"
[ "$(sha256sum < "$NEW/vm.raw")" = "$(sha256sum < "$img")" ] || fail "the disk restored different"
[ "$(qemu-img info --output=json "$NEW/vm.qcow2" | jq -r .format)" = qcow2 ] || fail "no qcow2"
cmp "$WORK/src/data/photos/a.jpg" "$NEW/plain/$PART/a.jpg" || fail "plain tar gave another photo"
grep -q 'notes v1' "$NEW/plain$WORK/src/data/docs/notes.txt" || fail "plain tar of the base archive"
diff -r "$WORK/src/data" "$NEW/chain$WORK/src/data" || fail "the chain with tar, dd and truncate differs"
cmp /etc/passwd "$NEW/plain/etc/passwd" || fail "age | tar gave another passwd"
# Every archive was read as signed by the old machine, and one whose
# signature is gone is refused on the new one.
snap-restore --from "$DEST" --identity "$KEY" -q verify $(cat "$NEW/everything.txt") > "$WORK/verified.json"
jq -s -e --arg p "snap@$(hostname)" 'map(select(.what | startswith("disks/") | not)) | length == 3 and all(.signed_by == $p)' \
    "$WORK/verified.json" > /dev/null || fail "not every archive verified as signed: $(cat "$WORK/verified.json")"
rec=$(ls "$DEST"/data/*.json | head -n 1)
mv "$rec.sig" "$WORK/moved.sig"
set +e
snap-restore --from "$DEST" -q verify "data/$(basename "$rec" .json)" > /dev/null 2> "$WORK/unsigned.err"
rc=$?
set -e
[ "$rc" = 77 ] && grep -q "not signed" "$WORK/unsigned.err" || fail "an unsigned record was read (exit $rc): $(cat "$WORK/unsigned.err")"
echo "recovery guide: every command ran, everything came back"
