"""Authorized script locations (NetBackup's DB_SCRIPT_PATH rule).

A policy's script runs only if it lies in the default script directory or in a location
the client's configuration registers (a directory, or one script's full path); it must be
a local file — not on a network file system — and neither it nor its directory may be
writable by everyone.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "ceph",
              "glusterfs", "davfs", "fuse.s3fs"}
ST_NOT_AUTHORIZED = 6      # the backup failed: the script may not run
ST_NO_SCRIPT = 71          # none of the files in the file list exist


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def _mount_type(path: str) -> str:
    best, fstype = "", ""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    mount = parts[1].replace("\\040", " ")
                    if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                        best, fstype = mount, parts[2]
    except OSError:
        return ""
    return fstype


def check(script: str, default_dir: str, registered: list[str]) -> Refusal | None:
    """None if ``script`` may run, else why not (with the NetBackup status to end with)."""
    if not os.path.isabs(script):
        return Refusal(ST_NOT_AUTHORIZED, f"script {script} is not an absolute path")
    real = os.path.realpath(script)
    if not os.path.isfile(real):
        return Refusal(ST_NO_SCRIPT, f"script {script} does not exist on this client")
    allowed = False
    for location in [default_dir, *registered]:
        loc = os.path.realpath(location)
        if real == loc or (os.path.isdir(loc) and os.path.commonpath([real, loc]) == loc):
            allowed = True
            break
    if not allowed:
        return Refusal(ST_NOT_AUTHORIZED,
                       f"script {script} is not in an authorized location: put it in "
                       f"{default_dir} or register its directory as DB_SCRIPT_PATH in the "
                       f"client configuration")
    if _mount_type(real) in NETWORK_FS:
        return Refusal(ST_NOT_AUTHORIZED, f"script {script} is on a network file system; "
                                          "scripts must be local")
    for path in (real, os.path.dirname(real)):
        mode = os.stat(path).st_mode
        if mode & stat.S_IWOTH and not (stat.S_ISDIR(mode) and mode & stat.S_ISVTX):
            return Refusal(ST_NOT_AUTHORIZED, f"{path} is writable by everyone; "
                                              "chmod o-w it before the script may run")
    if not os.access(real, os.X_OK):
        return Refusal(ST_NOT_AUTHORIZED, f"script {script} is not executable")
    return None
