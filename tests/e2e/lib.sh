# Helpers for the end-to-end scripts. Each script runs with `set -eu`, in a
# fresh $WORK folder, with the built snap binaries first on $PATH.

fail() { echo "FAIL: $*" >&2; exit 1; }

# A HOME of the script's own (scripts that need several set theirs): what the
# tools keep there (the signing key, the allowed signers) is never the user's.
export HOME="$WORK/home"
mkdir -p "$HOME"

# A listing that pins type, mode, size, mtime (ns), owner and symlink target of
# every entry under a folder, paths relative to it, sorted; regular file
# content is compared by diff -r separately.
listing() {
    (cd "$1" && find . -mindepth 1 ! -name '.' -printf '%P|%y|%m|%s|%T@|%U:%G|%l\n' \
        | awk -F'|' 'BEGIN{OFS="|"} $2=="d"{$4="-"} $2=="l"{$3="-"} {print}' | LC_ALL=C sort)
}

# Proves a snapshot folder equals a tree: content with diff -r (fifos aside,
# which diff can't read), metadata with the listing.
same_tree() {
    tree=$1 snap=$2
    diff -r --no-dereference -x '*fifo*' "$tree" "$snap" || fail "content differs: $tree vs $snap"
    listing "$tree" > "$WORK/l1"
    listing "$snap" > "$WORK/l2"
    diff "$WORK/l1" "$WORK/l2" || fail "metadata differs: $tree vs $snap"
}

ino() { stat -c %i "$1"; }

# as NAME CMD...: becomes CMD run as machine NAME (its own host name,
# machine id, state folder and store), by exec, so that `as … &` leaves the
# tool's own pid in $!. `machine` runs it in a subshell, for the foreground.
# A script that uses them checks first that /etc/machine-id exists.
as() {
    name=$1
    shift
    printf '%032x\n' "$(printf %s "$name" | cksum | cut -d' ' -f1)" > "$WORK/machine-id.$name"
    mkdir -p "$WORK/$name/state"
    XDG_STATE_HOME=$WORK/$name/state SNAP_STORE=$WORK/$name/store \
        exec unshare --mount --uts sh -c 'mount --bind "$0" /etc/machine-id && hostname "$1" && shift && exec "$@"' \
        "$WORK/machine-id.$name" "$name" "$@"
}
machine() { (as "$@"); }
