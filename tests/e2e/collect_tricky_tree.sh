#!/usr/bin/env bash
# Collects a tricky tree, changes it, collects again; proves with stat that
# unchanged files share an inode and with diff -r and a metadata listing that
# every snapshot equals the tree it was taken from.
set -eu
. "$(dirname "$0")/lib.sh"

src=$WORK/src
mkdir -p "$src"/{sub/deep,empty,.hidden,ro}
cd "$src"
echo "hello" > a.txt
echo "hidden" > .hidden/secret
printf 'ignored.txt\n*.o\n' > .gitignore
echo "git would skip me" > ignored.txt
echo "object" > main.o
ln -s a.txt link
ln -s ../../nowhere dangling
ln a.txt hard
mkfifo fifo
printf 'x' > "$(printf 'caf\xe9')"
truncate -s 64M sparse && echo end >> sparse
echo deep > sub/deep/f
echo log > sub/x.log
printf '*.log\n' > sub/.snapignore
echo ro > ro/file && chmod 444 ro/file && chmod 555 ro
# Date everything in the past, as a real tree is: entries changed in the
# second before a run are copied again by the next one (racy timestamps).
find . -exec touch -h -d '2020-01-02 03:04:05' {} +
chmod 4755 a.txt
if [ "$(id -u)" = 0 ]; then   # owners are kept when run as root
    chown 1234:5678 main.o sub/deep
    chown -h 4321:8765 link
fi
touch -h -d '2001-02-03 04:05:06.123456789' link
touch -d '2001-02-03 04:05:06.987654321' sub/deep/f
cd "$WORK"

store=$WORK/store
snap-collect --store "$store" --min-free 0 --name tricky "$src" > rec1.json
jq -e '.kind == "snapshot" and .errors == 0 and .parent == null' rec1.json > /dev/null || fail "first record: $(cat rec1.json)"
snap1=$(jq -r .path rec1.json)$src
cp -a "$src" "$WORK/src-at-1"   # what the tree looked like at snapshot 1

# The .snapignore'd log is not there; everything else is, .gitignore'd files included.
[ ! -e "$snap1/sub/x.log" ] || fail "x.log should be excluded by .snapignore"
rm "$WORK/src-at-1/sub/x.log" && touch -r "$src/sub" "$WORK/src-at-1/sub"
[ -e "$snap1/ignored.txt" ] && [ -e "$snap1/main.o" ] || fail ".gitignore must not exclude"
[ -p "$snap1/fifo" ] || fail "fifo not kept"
[ "$(du -k "$snap1/sparse" | cut -f1)" -lt 1024 ] || fail "sparse file was filled"
[ "$(ino "$snap1/a.txt")" = "$(ino "$snap1/hard")" ] || fail "hard link split"
same_tree "$WORK/src-at-1" "$snap1"

# Change: edit one file, add one, remove one, chmod one.
sleep 0.01
echo "more" >> "$src/sub/deep/f"
echo new > "$src/new.txt"
rm "$src/.hidden/secret"
chmod 600 "$src/ignored.txt"
snap-collect --store "$store" --min-free 0 --name tricky "$src" > rec2.json
jq -e --arg p "$(jq -r .id rec1.json)" '.parent == $p and .new_files == 3' rec2.json > /dev/null \
    || fail "second record: $(cat rec2.json)"
snap2=$(jq -r .path rec2.json)$src
touch -r "$src/sub" "$WORK/sub.mtime"
rm "$src/sub/x.log"   # excluded, so not in any snapshot
touch -r "$WORK/sub.mtime" "$src/sub"
same_tree "$src" "$snap2"
same_tree "$WORK/src-at-1" "$snap1"   # the first snapshot did not move

# Unchanged files share an inode with the first snapshot; changed ones do not.
for f in a.txt hard sparse "$(printf 'caf\xe9')" ro/file main.o; do
    [ "$(ino "$snap1/$f")" = "$(ino "$snap2/$f")" ] || fail "$f not hard-linked"
done
for f in sub/deep/f ignored.txt; do
    [ "$(ino "$snap1/$f")" != "$(ino "$snap2/$f")" ] || fail "$f changed but shares an inode"
done

# The index lists the same entries as the tree, sorted.
zstd -dc "$(jq -r .index rec2.json)" | jq -r .path > idx.txt
[ "$(wc -l < idx.txt)" -gt 10 ] || fail "index too short"
grep -q '"path_b64"' <(zstd -dc "$(jq -r .index rec2.json)") || fail "non-UTF-8 name lacks path_b64"

# `latest` points at the second snapshot.
[ "$(readlink "$store/sets/tricky/latest")" = "$(jq -r .id rec2.json)" ] || fail "latest"

# A closed stdout is not an error.
set +e
snap-collect --store "$store" --min-free 0 --name tricky "$src" | head -c 0
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || fail "closed stdout gave exit $rc"
echo "ok: tricky tree collected twice, snapshots equal their trees"
