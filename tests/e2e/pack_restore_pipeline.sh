#!/usr/bin/env bash
# The whole backup as a pipeline: snap-collect | snap-pack, twice (the second
# incremental), then a restore of the chain proven equal to the tree by diff -r
# and the metadata listing; the archive folder passes `sha256sum -c` alone.
set -eu
. "$(dirname "$0")/lib.sh"

src=$WORK/src
mkdir -p "$src/docs" "$src/bin"
for f in $(seq 1 200); do head -c $((f * 131)) /dev/urandom > "$src/docs/f$f"; done
printf 'hello\n' > "$src/a.txt"
ln -s ../a.txt "$src/docs/link"
ln "$src/a.txt" "$src/bin/hard"
mkfifo "$src/fifo"
chmod 0640 "$src/docs/f7"
touch -d '2020-01-01 00:00:00.123456789' "$src/docs/f1"
store=$WORK/store
collect="snap-collect --store $store --min-free 0 --quiet --name p $src"
pack="snap-pack --store $store --min-free 0 --quiet --out $WORK/ext"

$collect | $pack > one.json
[ "$(jq -r .kind one.json)" = archive ] || fail "no archive record: $(cat one.json)"
[ "$(jq -r .base one.json)" = null ] || fail "first archive is not full"

echo changed >> "$src/docs/f3"
rm "$src/docs/f4"
printf 'new\n' > "$src/docs/new"
sleep 1.1
$collect | $pack --incremental > two.json
[ "$(jq -r .base one.json)" = null ] || fail "base"
[ "$(jq -r .base two.json)" = "$(jq -r .id one.json)" ] || fail "second archive is not on the first"
[ "$(jq -r .packed_files two.json)" = 2 ] || fail "incremental carried $(jq -r .packed_files two.json) files"

(cd "$WORK/ext/p" && sha256sum -c --quiet ./*.sha256) || fail "sha256sum -c"
snap-restore verify --from "$WORK/ext" "p/$(jq -r .id one.json)" "p/latest" > verified.json
[ "$(jq -s 'map(.errors) | add' verified.json)" = 0 ] || fail "verify: $(cat verified.json)"

snap-restore restore --from "$WORK/ext" p/latest --to "$WORK/r" > restored.json
same_tree "$src" "$WORK/r$src"
[ "$(stat -c %i "$WORK/r$src/a.txt")" = "$(stat -c %i "$WORK/r$src/bin/hard")" ] || fail "hard link lost"
echo "ok: collect | pack, twice, restores the tree exactly"
