#!/usr/bin/env python3
"""C ABI speed (issue #5), measured in one run against one server:

* a C program (examples/c/xbsa_backup) backing up 1 GiB from a pipe with 1 MiB buffers,
  against the Python API doing the same (examples/xbsa_backup.py)   target >= 0.8
* the C program with 512-byte buffers, a real agent's default          target >= 50 MB/s

    python bench/cabi.py [--gib 1] [--repeat 2]

Each round runs both, in alternating order (Python first, then C first, ...), and each is
given its best round: on a VM whose memory state favours whoever writes first (see
docs/bench-history.md), one fixed order measures the order, not the library.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import _here  # noqa: E402  (this tree first on the path)

ROOT = _here.ROOT
GEN = ("import sys,random; b=random.Random(3).randbytes(1<<24); n=int(sys.argv[1])\n"
       "for i in range(n >> 24): sys.stdout.buffer.write(b)")


def timed(cmd: list[str], total: int) -> float:
    producer = subprocess.Popen([sys.executable, "-c", GEN, str(total)], stdout=subprocess.PIPE)
    t = time.perf_counter()
    out = subprocess.run(cmd, stdin=producer.stdout, capture_output=True, env=_here.env())
    dt = time.perf_counter() - t
    producer.wait()
    if out.returncode != 0:
        raise SystemExit(out.stderr.decode())
    return total / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=2, help="rounds, in alternating order")
    args = ap.parse_args()
    total = int(args.gib * (1 << 30)) >> 24 << 24
    work = tempfile.mkdtemp(prefix="openxbsa-bench-")
    lib = os.path.join(work, "lib")
    subprocess.run(_here.cli("libxbsa", "build", "--out", lib), env=_here.env(),
                   check=True, capture_output=True)
    prog = os.path.join(work, "xbsa_backup")
    subprocess.run(["gcc", "-O2", "-I", os.path.join(lib, "include"), "-o", prog,
                    os.path.join(ROOT, "examples", "c", "xbsa_backup.c"), "-L", lib, "-lxbsa64",
                    f"-Wl,-rpath,{lib}"], check=True)
    home = os.path.join(work, "home")
    server = subprocess.Popen(_here.cli("server", "--home", home, "--log-level", "WARNING"),
                              env=_here.env(), stderr=subprocess.DEVNULL)
    address = f"unix:{home}/xbsa.sock"
    try:
        for _ in range(200):
            if os.path.exists(f"{home}/xbsa.sock"):
                break
            time.sleep(0.05)
        runs: dict[str, list[float]] = {"py": [], "c": []}
        commands = {
            "py": [sys.executable, os.path.join(ROOT, "examples", "xbsa_backup.py"), "/bench/py",
                   "--buffer", str(1 << 20), "--service", address],
            "c": [prog, "/bench/c", str(1 << 20), address]}
        for i in range(max(1, args.repeat)):
            for name in ("py", "c") if i % 2 == 0 else ("c", "py"):
                runs[name].append(timed(commands[name], total))
        py, c = max(runs["py"]), max(runs["c"])
        small_total = min(total, 256 << 20)
        c512 = timed([prog, "/bench/c512", "512", address], small_total)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"data from a pipe                {total / (1 << 30):.2f} GiB")
    print("rounds (MB/s): Python " + " ".join(f"{r / 1e6:.0f}" for r in runs["py"])
          + ", C " + " ".join(f"{r / 1e6:.0f}" for r in runs["c"]))
    print(f"Python API, 1 MiB buffers       {py / 1e6:8.1f} MB/s")
    print(f"C program, 1 MiB buffers        {c / 1e6:8.1f} MB/s   ratio {c / py:.2f}  (target >= 0.8)")
    print(f"C program, 512-byte buffers     {c512 / 1e6:8.1f} MB/s   ({small_total >> 20} MiB; target >= 50)")


if __name__ == "__main__":
    main()
