#!/usr/bin/env bash
# Disk snapshots end to end: a raw ext4 image (mke2fs -d, no mounting) is
# snapshotted with the blocks method and pushed to a folder "drive"; after a
# ~1% change the second snapshot and its push carry only the changed blocks;
# the drive alone restores each snapshot byte-identical into a new image, and
# into a damaged copy by fetching only the blocks that differ.
set -eu
. "$(dirname "$0")/lib.sh"
export PATH="$PATH:/usr/sbin:/sbin"
export SNAP_STORE=$WORK/store

mkdir -p "$WORK/src" "$WORK/usb"
for f in $(seq 1 160); do head -c 262144 /dev/urandom > "$WORK/src/f$f"; done
img=$WORK/vm.raw
truncate -s 64M "$img"
mke2fs -q -F -t ext4 -d "$WORK/src" "$img"

snap-disk create "$img" first -q | snap-push --dest "$WORK/usb" --min-free 0 -q > push1.json
sum1=$(sha256sum < "$img")
sent1=$(jq .bytes push1.json)
[ "$sent1" -gt $((35 * 1048576)) ] || fail "first push sent only $sent1 bytes"

# About 1% of the image: 640 KiB of new data over file data (at 30 MiB).
dd if=/dev/urandom of="$img" bs=64K count=10 seek=480 conv=notrunc 2>/dev/null
snap-disk create "$img" second -q | snap-push --dest "$WORK/usb" --min-free 0 -q > push2.json
sum2=$(sha256sum < "$img")
sent2=$(jq .bytes push2.json)
[ "$sent2" -le $((2 * 1048576 + 65536)) ] || fail "second push sent $sent2 bytes for a 640 KiB change"
[ "$sent2" -gt 0 ] || fail "second push sent nothing"

# A new machine: no store, only the drive.
unset SNAP_STORE
snap-restore --from "$WORK/usb" restore disks/vm/first --to "$WORK/r1.raw" -q > r1.json
[ "$(sha256sum < "$WORK/r1.raw")" = "$sum1" ] || fail "first snapshot restored different"
snap-restore --from "$WORK/usb" restore disks/vm/second --to "$WORK/r1.raw" -q > r2.json
[ "$(sha256sum < "$WORK/r1.raw")" = "$sum2" ] || fail "second snapshot restored different"
fetched=$(jq .fetched r2.json)
[ "$fetched" -le $((2 * 1048576 + 65536)) ] || fail "going from first to second fetched $fetched bytes"
[ ! -e "$WORK/.r1.raw.snap-restore" ] || fail "the fetch cache was left behind"

# Retention: keep the newest snapshot at the drive and in the store; the
# blocks only the first one used are collected, the second still restores.
# At the drive, only blocks older than a day go: a fresh unreferenced one may
# be another machine's push in progress.
export SNAP_STORE=$WORK/store
find "$WORK/usb/disks/vm/blocks" -type f -exec touch -d '2 days ago' {} +
fresh="$WORK/usb/disks/vm/blocks/ab/ab$(printf '0%.0s' $(seq 1 62))"
mkdir -p "$(dirname "$fresh")"
printf 'in flight' > "$fresh"
blocks_before=$(find "$WORK/usb/disks/vm/blocks" -type f | wc -l)
snap-prune --dest "$WORK/usb" --keep-last 1 --dry-run -q > plan.json
snap-prune --dest "$WORK/usb" --keep-last 1 -q > pruned.json
planned=$(jq -s '[.[] | .freed // 0] | add' plan.json)
freed=$(jq -s '[.[] | .freed // 0] | add' pruned.json)
[ "$planned" = "$freed" ] && [ "$freed" -gt 65536 ] || fail "the dry run said $planned bytes, the prune freed $freed"
[ "$(jq -r 'select(.action == "remove") | .id' pruned.json)" = first ] || fail "drive: $(cat pruned.json)"
blocks_after=$(find "$WORK/usb/disks/vm/blocks" -type f | wc -l)
[ "$blocks_after" -lt "$blocks_before" ] || fail "no block was collected at the drive"
[ ! -e "$WORK/usb/disks/vm/first.json" ] && [ ! -e "$WORK/usb/disks/vm/first.map.zst" ] || fail "first is still at the drive"
[ -e "$fresh" ] || fail "a block written minutes ago was collected at the drive"
rm "$WORK/r1.raw"
snap-restore --from "$WORK/usb" restore disks/vm/second --to "$WORK/r1.raw" -q > /dev/null
[ "$(sha256sum < "$WORK/r1.raw")" = "$sum2" ] || fail "second restores different after the prune"
snap-prune --keep-last 1 -q > /dev/null
snap-disk verify vm -q > /dev/null || fail "the store's kept snapshot is damaged after the prune"
[ "$(snap-disk list vm -q | jq -r .name)" = second ] || fail "store still lists $(snap-disk list vm -q | jq -r .name)"

# The drive describes itself: list and verify work from it alone; a damaged block is found.
unset SNAP_STORE
snap-restore list "$WORK/usb" | grep -q '^disks/vm/second .* blocks ' || fail "list: $(snap-restore list "$WORK/usb")"
snap-restore --from "$WORK/usb" verify disks/vm/second -q > verified.json || fail "verify of a whole snapshot failed"
[ "$(jq .errors verified.json)" = 0 ] || fail "verify: $(cat verified.json)"
victim=$(find "$WORK/usb/disks/vm/blocks" -type f | head -1)
printf 'garbage' > "$victim"
if snap-restore --from "$WORK/usb" verify disks/vm/second -q > verified.json 2> verify.err; then
    fail "a damaged block passed verify"
else
    rc=$?
fi
[ "$rc" = 65 ] || fail "verify of a damaged block exited $rc"
grep -q "block" verify.err || fail "verify did not name the block: $(cat verify.err)"
