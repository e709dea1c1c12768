#!/usr/bin/env python3
"""dirwatcher sample job: summarise one ready directory.

Usage: process_dir.py DIR

Prints what it finds (file count, total bytes, a sha256 manifest in `sha256sum` format) and writes the
summary as JSON to DIR/_DONE. Exits 0 on success; 1 with a message on stderr when DIR is missing or a file
cannot be read; 2 on wrong usage. Python 3 standard library only: it runs on any compute node.

dirwatcher installs this file (embedded in its binary) and uses it as the default `job.wrap_cmd`:
    python3 /opt/dirwatcher/process_dir.py <dir>
Replace it with your own job; this one only shows where the directory arrives and what a job can do.
"""

import datetime
import hashlib
import json
import os
import pwd
import socket
import stat
import sys

DONE = "_DONE"
CHUNK = 1 << 20


class JobError(Exception):
    """A problem with the input that the operator must fix; reported in one line, exit status 1."""


def is_own_output(name):
    # Slurm writes the job's stdout (slurm-<id>.out) into the directory while the job runs: its hash would
    # describe a half-written file, and _DONE is what this job writes itself.
    return name == DONE or (name.startswith("slurm-") and name.endswith(".out"))


def sha256_of(path):
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while True:
                block = f.read(CHUNK)
                if not block:
                    break
                h.update(block)
    except OSError as e:
        raise JobError(f"cannot read `{path}`: {e.strerror or e}") from e
    return h.hexdigest()


def survey(root):
    """Returns (manifest: list of {path, bytes, sha256}, skipped: list of {path, kind})."""
    manifest, skipped = [], []

    def walk_error(e):
        raise JobError(f"cannot list `{e.filename}`: {e.strerror or e}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if dirpath == root and is_own_output(name):
                continue
            try:
                st = os.lstat(full)
            except OSError as e:
                raise JobError(f"cannot read `{full}`: {e.strerror or e}") from e
            if stat.S_ISLNK(st.st_mode):
                skipped.append({"path": rel, "kind": "symlink"})
                continue
            if not stat.S_ISREG(st.st_mode):
                # A FIFO would block the job forever; sockets and devices have no content to hash.
                skipped.append({"path": rel, "kind": "special file"})
                continue
            manifest.append({"path": rel, "bytes": st.st_size, "sha256": sha256_of(full)})
    return manifest, skipped


def user_name():
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def write_done(root, summary):
    # Write beside, then rename: a reader never sees half a _DONE.
    tmp = os.path.join(root, f".{DONE}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(root, DONE))
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise JobError(f"cannot write `{os.path.join(root, DONE)}`: {e.strerror or e}") from e


def main(argv):
    if len(argv) != 2:
        print("usage: process_dir.py DIR", file=sys.stderr)
        return 2
    root = os.path.abspath(argv[1])
    try:
        if not os.path.exists(root):
            raise JobError(f"directory `{root}` does not exist")
        if not os.path.isdir(root):
            raise JobError(f"`{root}` is not a directory")
        manifest, skipped = survey(root)
        total = sum(e["bytes"] for e in manifest)
        print(f"directory: {root}")
        for e in manifest:
            print(f"{e['sha256']}  {e['path']}")
        for s in skipped:
            print(f"skipped {s['kind']}: {s['path']}")
        print(f"{len(manifest)} files, {total} bytes")
        summary = {
            "dir": root,
            "files": len(manifest),
            "bytes": total,
            "manifest": manifest,
            "skipped": skipped,
            "host": socket.gethostname(),
            "job_id": os.environ.get("SLURM_JOB_ID"),
            "user": user_name(),
            "finished_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        write_done(root, summary)
        print(f"wrote {os.path.join(root, DONE)}")
        return 0
    except JobError as e:
        print(f"process_dir: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
