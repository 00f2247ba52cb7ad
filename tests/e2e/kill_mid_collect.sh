#!/usr/bin/env bash
# kill -9 at several moments of a collect: no earlier snapshot is harmed and
# the next run succeeds and equals the tree.
set -eu
. "$(dirname "$0")/lib.sh"

src=$WORK/src
mkdir -p "$src"
for d in $(seq 1 40); do
    mkdir -p "$src/d$d"
    for f in $(seq 1 50); do head -c $((f * 97)) /dev/urandom > "$src/d$d/f$f"; done
done
head -c 50M /dev/urandom > "$src/big"
store=$WORK/store
args="--store $store --min-free 0 --quiet --name k $src"
snap-collect $args > first.json
first=$(jq -r .path first.json)
cp -a "$src" "$WORK/src-at-1"

echo changed >> "$src/d1/f1"
head -c 50M /dev/urandom > "$src/big"
for delay in 0.02 0.05 0.1 0.2 0.4; do
    snap-collect $args > /dev/null &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    same_tree "$WORK/src-at-1" "$first$src"
    # Only finished snapshots are listed: each has its tree, index and record.
    for rec in "$store"/sets/k/*.json; do
        id=$(basename "$rec" .json)
        [ -d "$store/sets/k/$id" ] && [ -f "$store/sets/k/$id.index.zst" ] || fail "half snapshot $id"
    done
done
snap-collect $args > last.json
same_tree "$src" "$(jq -r .path last.json)$src"
# .blocks holds the digest pages the indexes name; nothing else is hidden work.
[ -z "$(find "$store/sets/k" -maxdepth 1 -name '.*' ! -name .blocks)" ] || fail "leftovers: $(ls -a "$store/sets/k")"
echo "ok: kill -9 never harmed a snapshot"
