#!/usr/bin/env bash
# kill -9 during a pack leaves no archive under a final name and the rerun
# makes a good one; kill -9 during a restore leaves no half file under a real
# name and the rerun completes it.
set -eu
. "$(dirname "$0")/lib.sh"

src=$WORK/src
mkdir -p "$src"
for d in $(seq 1 20); do
    mkdir -p "$src/d$d"
    for f in $(seq 1 50); do head -c $((f * 211)) /dev/urandom > "$src/d$d/f$f"; done
done
head -c 120M /dev/urandom > "$src/big"
store=$WORK/store
snap-collect --store "$store" --min-free 0 --quiet --name k "$src" > snap.json
ext=$WORK/ext
for delay in 0.05 0.2 0.5; do
    snap-pack --store "$store" --min-free 0 --quiet --snapshot k/latest --out "$ext" > /dev/null &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # An archive exists once its record does, and then it is whole. (A kill
    # in the middle of the renames may leave final names without a record:
    # nothing lists them, and the next pack removes them.) Names are cut at
    # their first dot, not the path's: $WORK may hold one (/tmp/.tmpXXXX).
    for f in "$ext"/k/*.json; do
        [ -e "$f" ] || continue
        [ -f "${f%.json}.tar.zst" ] && [ -f "${f%.json}.index.zst" ] && [ -f "${f%.json}.sha256" ] \
            || fail "a record without its archive: $f"
    done
done
snap-pack --store "$store" --min-free 0 --quiet --snapshot k/latest --out "$ext" > packed.json
[ -z "$(find "$ext/k" -name '*.part')" ] || fail "leftover .part files"
for f in "$ext"/k/*; do
    b=${f##*/}
    [ -f "$ext/k/${b%%.*}.json" ] || fail "final name without a record after the rerun: $f"
done
snap-restore verify --from "$ext" k/latest > /dev/null || fail "verify after rerun"

for delay in 0.1 0.3; do
    snap-restore restore --from "$ext" k/latest --to "$WORK/r" --quiet > /dev/null &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # Whatever is under a real name is whole: equal to the source file.
    if [ -d "$WORK/r$src" ]; then
        bad=$(cd "$WORK/r$src" && find . -type f ! -name '.*.snap-part' | while read -r f; do
            cmp -s "$f" "$src/$f" || echo "$f"
        done)
        [ -z "$bad" ] || fail "half files under their real names: $bad"
    fi
done
snap-restore restore --from "$ext" k/latest --to "$WORK/r" > restored.json
[ "$(jq -r .errors restored.json)" = 0 ] || fail "rerun: $(cat restored.json)"
same_tree "$src" "$WORK/r$src"
[ -z "$(find "$WORK/r" -name '*.snap-part')" ] || fail "leftover .snap-part files"
echo "ok: kill -9 in pack and restore never left a half file under a real name"
