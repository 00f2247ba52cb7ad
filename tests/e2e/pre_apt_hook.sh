#!/usr/bin/env bash
# snap-backup --pre-apt, as apt's DPkg::Pre-Install-Pkgs hook runs it (apt's
# VERSION 2 list on stdin): a snapshot of the set and of the disk, tagged
# pre-apt, the packages in the description (the first 10, then how many
# more); version 1's bare .deb paths too; a config of disks alone takes the
# disk's with no warning; and exit 0 with a warning when no
# rollback point can be taken. The package check of `cargo xtask test` runs
# the same hook through a real apt-get.
set -eu
. "$(dirname "$0")/lib.sh"

mkdir -p "$WORK/src"
printf 'one\n' > "$WORK/src/a.conf"
qemu-img create -q -f qcow2 "$WORK/vm.qcow2" 1M
export HOME=$WORK/home
cat > "$WORK/config.json" <<JSON
{"store": "$WORK/store",
 "backup_sets": [{"name": "etc", "sources": ["$WORK/src"]}],
 "collect": {"min_free": "0"},
 "disks": [{"image": "$WORK/vm.qcow2"}]}
JSON
export SNAP_CONFIG=$WORK/config.json

{
    printf 'VERSION 2\nAPT::Architecture=amd64\nDPkg::Pre-Install-Pkgs::=/usr/bin/snap-backup --pre-apt\n\n'
    printf 'newpkg - < 1.0 /var/cache/apt/archives/newpkg_1.0_all.deb\n'
    printf 'newpkg - < 1.0 **CONFIGURE**\n'
    printf 'libfoo 1.0 < 1.1 /var/cache/apt/archives/libfoo_1.1_amd64.deb\n'
    printf 'oldpkg 2.0 > - **REMOVE**\n'
    printf 'back 2.0 > 1.0 /var/cache/apt/archives/back_1.0_all.deb\n'
} > list.txt
snap-backup --pre-apt < list.txt > out.txt 2> err.txt || fail "exit $?: $(cat err.txt)"
[ ! -s out.txt ] || fail "the hook wrote to stdout: $(cat out.txt)"
want='before apt: install newpkg 1.0, upgrade libfoo 1.0 -> 1.1, remove oldpkg, downgrade back 2.0 -> 1.0'
snap-restore list --json | jq -r 'select(.kind == "snapshot") | [(.tags | join(",")), .description] | join("|")' > sets.txt
[ "$(cat sets.txt)" = "pre-apt|$want" ] || fail "set snapshot: $(cat sets.txt)"
snap-disk list vm 2> /dev/null | jq -r '[(.tags | join(",")), .description] | join("|")' > disk.txt
[ "$(cat disk.txt)" = "pre-apt|$want" ] || fail "disk snapshot: $(cat disk.txt)"

# Twelve packages: ten named, then how many more. Version 1: .deb paths only.
{
    printf 'VERSION 2\n\n'
    for i in 01 02 03 04 05 06 07 08 09 10 11 12; do printf 'p%s - < 1 /c/p%s_1_all.deb\n' "$i" "$i"; done
} | snap-backup --pre-apt 2> err.txt || fail "12 packages: $(cat err.txt)"
printf '/var/cache/apt/archives/tool_2.0_amd64.deb\n' | snap-backup --pre-apt 2> err.txt || fail "version 1: $(cat err.txt)"
snap-restore list --json | jq -r 'select(.kind == "snapshot") | .description' | tail -2 > last.txt
printf '%s\n' 'before apt: install p01 1, install p02 1, install p03 1, install p04 1, install p05 1, install p06 1, install p07 1, install p08 1, install p09 1, install p10 1, and 2 more' 'before apt: install tool' > want.txt
diff want.txt last.txt || fail "descriptions differ"

# No rollback point possible (the store's parent is a file): a warning, exit 0.
printf 'x\n' > "$WORK/not-a-folder"
jq --arg s "$WORK/not-a-folder/store" '.store = $s' "$WORK/config.json" > "$WORK/broken.json"
rc=0
SNAP_CONFIG=$WORK/broken.json snap-backup --pre-apt < list.txt 2> err.txt || rc=$?
[ "$rc" = 0 ] || fail "a failed rollback point gave exit $rc: it must never stop apt"
grep -q '^snap-backup: warning: no complete pre-apt rollback point' err.txt || fail "no warning: $(cat err.txt)"
grep -q '^snap-collect: ' err.txt || fail "the tool's own error is not shown: $(cat err.txt)"

# A config of disks alone: the disk's rollback point, and nothing to warn of.
jq 'del(.backup_sets)' "$WORK/config.json" > "$WORK/disks.json"
SNAP_CONFIG=$WORK/disks.json snap-backup --pre-apt < list.txt 2> err.txt || fail "disks only: exit $?"
[ ! -s err.txt ] || fail "disks only: $(cat err.txt)"
[ "$(snap-disk list vm 2> /dev/null | jq -s length)" = 4 ] || fail "disks only: no new disk snapshot"
