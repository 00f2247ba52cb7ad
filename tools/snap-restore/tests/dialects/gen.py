"""Writes a tar of SRC to OUT with Python's tarfile, in FORMAT (ustar, gnu, pax).

Members a format cannot hold are left out (named on stderr), as GNU tar does.
The pax archive starts with a global header, as `git archive` writes one.
"""
import os
import sys
import tarfile

src, out, fmt = sys.argv[1:4]
formats = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
glob = {"comment": "made by python tarfile"} if fmt == "pax" else None
with tarfile.open(out, "w", format=formats[fmt], pax_headers=glob) as t:
    for root, dirs, files in os.walk(os.fsencode(src)):
        for name in sorted(dirs) + sorted(files):
            path = os.path.join(root, name)
            arcname = os.fsdecode(os.path.relpath(path, os.fsencode(src)))
            try:
                t.add(os.fsdecode(path), arcname=arcname, recursive=False)
            except ValueError as e:
                print(arcname, e, file=sys.stderr)
