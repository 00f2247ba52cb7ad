#!/usr/bin/env bash
# Two machines, one drive: "laptop" backs up (incremental archives, a blocks
# disk snapshot reusing blocks already there) while "nas", with no store of
# its own, prunes the same folder. Each machine runs in its own mount and UTS
# namespace with its own host name and /etc/machine-id, and its own state
# folder and store, as two real machines would. The prune must wait for the
# push (exit 75 naming it), never remove what a record needs, and a push
# stopped (SIGSTOP) across a forced prune must not publish.
set -eu
. "$(dirname "$0")/lib.sh"
export PATH="$PATH:/usr/sbin:/sbin"

[ -e /etc/machine-id ] || fail "needs /etc/machine-id to stand in for other machines"

# wait_lock: until a lock of host $1 is at the drive.
wait_lock() {
    for _ in $(seq 1 200); do
        ls "$usb/.snap/locks/$1-"* > /dev/null 2>&1 && return 0
        sleep 0.05
    done
    fail "no lock of $1 appeared at the drive"
}

usb=$WORK/usb
src=$WORK/src
mkdir -p "$usb" "$src"
for f in $(seq 1 20); do head -c 20000 /dev/urandom > "$src/f$f"; done

# Laptop: a full archive, then an incremental one on it, pushed slowly.
machine laptop snap-collect --name home "$src" --min-free 0 -q \
    | machine laptop snap-pack --min-free 0 -q | machine laptop snap-push --dest "$usb" --min-free 0 -q > push1.json
head -c 3000000 /dev/urandom > "$src/big"
machine laptop snap-collect --name home "$src" --min-free 0 -q \
    | machine laptop snap-pack --min-free 0 --incremental -q > incr.json
base=$(jq -r .base incr.json)
[ "$base" = "$(jq -r .source.id push1.json)" ] || fail "the second archive is not incremental on the first"
as laptop snap-push --dest "$usb" --min-free 0 --bwlimit 400K -q < incr.json > push2.json &
pusher=$!
wait_lock laptop

# The NAS prunes meanwhile: it must wait, naming the push.
if machine nas snap-prune --dest "$usb" --keep-last 1 -q > /dev/null 2> prune1.err; then
    fail "a prune ran while another machine pushed"
else
    rc=$?
fi
[ "$rc" = 75 ] || fail "the prune during a push exited $rc: $(cat prune1.err)"
grep -q "busy: snap-push .* on laptop, user .*) holds a lock there" prune1.err || fail "prune1: $(cat prune1.err)"
# --forget waits the same way: busy (75), naming the push, never "not found".
if machine nas snap-prune --dest "$usb" --forget "home/$base" -q > /dev/null 2> forget1.err; then
    fail "a --forget ran while another machine pushed"
else
    rc=$?
fi
[ "$rc" = 75 ] || fail "the --forget during a push exited $rc: $(cat forget1.err)"
grep -q "busy: snap-push .* on laptop, user .*) holds a lock there" forget1.err || fail "forget1: $(cat forget1.err)"
wait "$pusher" || fail "the push failed"
incr=$(jq -r .id push2.json)
[ -e "$usb/home/$incr.json" ] || fail "the incremental was not published"

# Now the prune runs: the incremental is kept, and its base with it.
machine nas snap-prune --dest "$usb" --keep-last 1 -q > pruned.json
[ "$(jq -r 'select(.action == "keep") | .id' pruned.json | sort | tr '\n' ' ')" = "$(printf '%s\n' "$base" "$incr" | sort | tr '\n' ' ')" ] \
    || fail "the prune did not keep the chain: $(cat pruned.json)"
[ -z "$(ls "$usb/.snap/locks")" ] || fail "locks left behind: $(ls "$usb/.snap/locks")"
machine nas snap-restore --from "$usb" restore "home/$incr" --to "$WORK/r1" -q > /dev/null
diff -r "$src" "$WORK/r1${src}" || fail "the incremental restored from the drive differs"

# Disk blocks: the second snapshot reuses the first's blocks; a prune from
# the NAS while it is pushed waits; afterwards the first goes and the second
# restores from the drive alone.
img=$WORK/vm.raw
head -c 8388608 /dev/urandom > "$img"
machine laptop snap-disk create "$img" first -q | machine laptop snap-push --dest "$usb" --min-free 0 -q > /dev/null
dd if=/dev/urandom of="$img" bs=64K count=64 seek=32 conv=notrunc 2>/dev/null
machine laptop snap-disk create "$img" second -q > second.json
as laptop snap-push --dest "$usb" --min-free 0 --bwlimit 1M -q < second.json > /dev/null &
pusher=$!
wait_lock laptop
kill -STOP "$pusher"
machine nas snap-prune --dest "$usb" --keep-last 1 -q > /dev/null 2> prune2.err && fail "a prune ran during a disk push"
grep -q "on laptop" prune2.err || fail "prune2: $(cat prune2.err)"
kill -CONT "$pusher"
wait "$pusher" || fail "the disk push failed"
machine nas snap-prune --dest "$usb" --keep-last 1 --set vm -q > pruned2.json
[ "$(jq -r 'select(.action == "remove") | .id' pruned2.json)" = first ] || fail "disk prune: $(cat pruned2.json)"
machine nas snap-restore --from "$usb" restore disks/vm/second --to "$WORK/r2.raw" -q > /dev/null
cmp "$img" "$WORK/r2.raw" || fail "the second disk snapshot restored different after the prune"

# A push stopped for longer than its lock's bound (3 s here) across a prune:
# the prune waits and says why; forced with --break-lock it runs; the push,
# continued, finds its lock gone and publishes nothing (75); run again, it does.
head -c 3000000 /dev/urandom > "$src/big2"
machine laptop snap-collect --name home "$src" --min-free 0 -q \
    | machine laptop snap-pack --min-free 0 --incremental -q > incr3.json
SNAP_LOCK_STALE_SECS=3 as laptop snap-push --dest "$usb" --min-free 0 --bwlimit 400K -q < incr3.json > push3.json 2> push3.err &
pusher=$!
wait_lock laptop
kill -STOP "$pusher"
sleep 4
machine nas snap-prune --dest "$usb" --keep-last 1 -q > /dev/null 2> prune3.err && fail "a prune ran past a stopped push"
grep -q "has not refreshed its lock for .* (stale after 3s); it may be stopped or cut off" prune3.err \
    || fail "prune3: $(cat prune3.err)"
machine nas snap-prune --dest "$usb" --keep-last 1 --break-lock -q > /dev/null 2> prune4.err \
    || fail "the forced prune failed: $(cat prune4.err)"
grep -q "removed the lock of snap-push .* on laptop" prune4.err || fail "prune4: $(cat prune4.err)"
kill -CONT "$pusher"
if wait "$pusher"; then fail "a push whose lock was broken published"; else rc=$?; fi
[ "$rc" = 75 ] || fail "the push with a broken lock exited $rc: $(cat push3.err)"
grep -q "is no longer held" push3.err || fail "push3: $(cat push3.err)"
incr3=$(jq -r .id incr3.json)
[ ! -e "$usb/home/$incr3.json" ] || fail "a record was published after its lock was broken"
machine laptop snap-push --dest "$usb" --min-free 0 -q < incr3.json > /dev/null 2> push4.err \
    || fail "the next push failed: $(cat push4.err)"
rm -rf "$WORK/r3"
machine nas snap-restore --from "$usb" restore "home/$incr3" --to "$WORK/r3" -q > /dev/null 2> restore3.err \
    || fail "restore3: $(cat restore3.err)"
diff -r "$src" "$WORK/r3${src}" || fail "the last archive restored from the drive differs"
# Each machine's work is named by its host: listed per host, from the drive alone.
machine nas snap-restore list "$usb" > list.txt
grep -q "^home  *$incr3  *laptop  *archive " list.txt || fail "list: $(cat list.txt)"
grep -q "^disks/vm/second  *laptop  *blocks " list.txt || fail "list: $(cat list.txt)"
[ "$(machine nas snap-restore list "$usb" --host laptop --json | jq -s length)" = 4 ] \
    || fail "list --host laptop: $(machine nas snap-restore list "$usb" --host laptop)"
[ -z "$(machine nas snap-restore list "$usb" --host nas)" ] || fail "the NAS pushed nothing"

# A push that is not stopped, whose fresh lock a forced prune breaks while it
# uploads: the lock is asked of the drive before the record is written, so
# the push publishes nothing (75); run again, it does.
head -c 3000000 /dev/urandom > "$src/big3"
machine laptop snap-collect --name home "$src" --min-free 0 -q \
    | machine laptop snap-pack --min-free 0 -q > full5.json
as laptop snap-push --dest "$usb" --min-free 0 --bwlimit 400K -q < full5.json > push5.json 2> push5.err &
pusher=$!
wait_lock laptop
machine nas snap-prune --dest "$usb" --keep-last 10 --break-lock -q > /dev/null 2> prune5.err \
    || fail "the forced prune failed: $(cat prune5.err)"
grep -q "removed the lock of snap-push .* on laptop" prune5.err || fail "prune5: $(cat prune5.err)"
if wait "$pusher"; then fail "a push whose lock was broken while it uploaded published"; else rc=$?; fi
[ "$rc" = 75 ] || fail "the push with a lock broken mid-upload exited $rc: $(cat push5.err)"
grep -q "is no longer held: it was removed or replaced at the destination" push5.err || fail "push5: $(cat push5.err)"
full5=$(jq -r .id full5.json)
[ ! -e "$usb/home/$full5.json" ] || fail "a record was published after its lock was broken mid-upload"
machine laptop snap-push --dest "$usb" --min-free 0 -q < full5.json > /dev/null 2> push6.err \
    || fail "the push after the broken one failed: $(cat push6.err)"
[ -e "$usb/home/$full5.json" ] || fail "the push after the broken one published nothing"
echo ok
