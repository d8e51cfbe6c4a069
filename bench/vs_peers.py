#!/usr/bin/env python3
"""OpenXBSA's dedup storage unit against restic and borg, side by side, in one run (issue #6).

    python bench/vs_peers.py [--dir DIR] [--scale 1.0] [--only random,dup,text,daily]
                             [--tools openxbsa,restic,borg] [--repeat N]

Installs nothing: restic and borg are used when on PATH (Debian: apt-get install restic
borgbackup) and reported as missing otherwise. Every tool gets the same generated inputs,
read from the page cache, and writes its repository under --dir:

* random  1 GiB of random bytes (incompressible, nothing to deduplicate)
* dup     1 GiB made of 16 distinct 8 MiB random blocks in random order
* text    1 GiB of log-like text (compressible about 4x)
* daily   seven daily versions of a 256 MiB database dump of 8 KiB pages, about 2 % of
          the pages changed each day; all seven backed up into one repository in turn,
          the last one restored

For each: ingest MB/s; restore MB/s twice: into a new file (restic restore, borg extract,
an XBSA client writing what BSAGetData returns) and as a stream to /dev/null (restic dump,
borg extract --stdout, the XBSA client discarding it) — on a VM where the first write to a
page costs a fault in the host, the file write caps every tool's restore alike; bytes on
disk (allocated blocks of the repository; for OpenXBSA the pool and the catalog); peak RSS
(OpenXBSA: the server; restic and borg: the process, polled); the CPU seconds each tool
spent per GiB on each stage (OpenXBSA: the server and the XBSA client together), which the
VM's drifting speed moves far less than the rates; and the ratios the issue's targets are
about. Encryption is on everywhere: OpenXBSA's pool
always encrypts (AES-256-GCM); restic always does (AES-256-CTR + Poly1305); borg with
``--encryption repokey`` (AES-256-CTR + HMAC-SHA256; this CPU has SHA extensions).
Compression is each tool's default: OpenXBSA zstd 1 (skipped on incompressible blobs),
restic ``auto`` (zstd), borg lz4. The raw disk write rate is ``dd bs=1M conv=fdatasync``
of the random input on the same disk, the better of a run before and after the tools; a third
run after a few seconds idle is printed beside it (on a VM that hands free memory back to
the host, that is the memory the tools' writes meet).

On a shared VM whose speed drifts by tens of percent over minutes, ``--repeat 2`` runs each
input twice, the tools in reverse order the second time, and compares each tool's better
round: every tool gets the same chance at a fast minute.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import _here  # noqa: E402  (this tree first on the path)
from openxbsa import xbsa as X  # noqa: E402

MiB = 1 << 20
PAGE = 8192
COLD_AFTER = 5.0     # seconds idle before the second look at the raw disk write rate


# ---------------------------------------------------------------------------- inputs
def gen_random(path: str, size: int, rng: random.Random) -> None:
    with open(path, "wb") as f:
        for _ in range(size // (16 * MiB)):
            f.write(rng.randbytes(16 * MiB))


def gen_dup(path: str, size: int, rng: random.Random) -> None:
    blocks = [rng.randbytes(8 * MiB) for _ in range(16)]
    with open(path, "wb") as f:
        for _ in range(size // (8 * MiB)):
            f.write(rng.choice(blocks))


def _log_prefixes(rng: random.Random, n: int) -> list[bytes]:
    hosts = [f"web-{i:02d}" for i in range(24)]
    paths = ["/api/v1/items", "/api/v1/orders", "/api/v2/search", "/login", "/static/app.js",
             "/api/v1/users", "/health", "/api/v1/cart", "/checkout", "/api/v2/recommend"]
    levels = ["INFO"] * 8 + ["WARN", "ERROR"]
    out = []
    for i in range(n):
        t = 1764000000 + i // 7
        out.append(
            (f"2026-11-{1 + t // 86400 % 28:02d}T{t // 3600 % 24:02d}:{t // 60 % 60:02d}:"
             f"{t % 60:02d}.{rng.randrange(1000):03d}Z {rng.choice(hosts)} "
             f"app[{rng.randrange(1000, 9999)}]: {rng.choice(levels)} "
             f"{rng.choice(['GET', 'POST', 'PUT'])} {rng.choice(paths)}/{rng.randrange(10**6)} "
             f"status={rng.choice([200] * 12 + [201, 304, 404, 500])} "
             f"bytes={rng.randrange(100, 90000)} dur={rng.random() * 300:.1f}ms "
             f"user=u{rng.randrange(50000):05d} trace=").encode())
    return out


def gen_text(path: str, size: int, rng: random.Random) -> None:
    """Log lines: fields drawn from a pool of 200,000 line beginnings, each line ending in a
    fresh random trace ID, so no run of lines repeats (nothing for chunk dedup to find;
    zstd still finds the repeated structure)."""
    prefixes = _log_prefixes(rng, 200_000)
    written = 0
    with open(path, "wb") as f:
        while written < size:
            picks = rng.choices(prefixes, k=6000)
            traces = rng.randbytes(8 * len(picks)).hex().encode()
            block = b"".join(p + traces[16 * i:16 * i + 16] + b"\n"
                             for i, p in enumerate(picks))[: size - written]
            f.write(block)
            written += len(block)


def _page(rng: random.Random, words: list[bytes]) -> bytes:
    """A database page: a header, binary row data, and text columns (compresses ~1.7x)."""
    text = b" ".join(rng.choices(words, k=700))[: PAGE // 2]
    body = rng.randbytes(PAGE // 2 - 24) + text
    return (b"PGPAGE" + rng.randbytes(18) + body + b"\0" * PAGE)[:PAGE]


def gen_daily(dirpath: str, size: int, rng: random.Random, days: int = 7) -> list[str]:
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9)))
             for _ in range(5000)]
    pages = size // PAGE
    dump = bytearray(b"".join(_page(rng, words) for _ in range(pages)))
    out = []
    for day in range(days):
        if day:
            for p in rng.sample(range(pages), pages // 50):     # 2 % of the pages
                dump[p * PAGE:(p + 1) * PAGE] = _page(rng, words)
        path = os.path.join(dirpath, f"dump-day{day + 1}.bin")
        with open(path, "wb") as f:
            f.write(dump)
        out.append(path)
    return out


# ---------------------------------------------------------------------------- measuring
def disk_bytes(*paths: str) -> int:
    total = 0
    for top in paths:
        if os.path.isfile(top):
            total += os.stat(top).st_blocks * 512
            continue
        for root, _dirs, files in os.walk(top):
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_blocks * 512
                except FileNotFoundError:
                    pass
    return total


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


TICK = os.sysconf("SC_CLK_TCK")          # the unit of /proc's CPU times


def proc_stat(path: str) -> list[str]:
    """The fields of a /proc .../stat file after the command name (state is [0], user and
    system CPU ticks [11] and [12], minor page faults [7])."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def process_cpu(pid: int) -> float:
    """User and system CPU seconds a running process has used (all its threads)."""
    fields = proc_stat(f"/proc/{pid}/stat")
    return (int(fields[11]) + int(fields[12])) / TICK


def run(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> tuple[float, int]:
    """Run a command; (seconds, its peak RSS). The peak is VmHWM polled every 10 ms (not
    the rusage of the child, which counts the bench's own memory shared at fork)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    peak = 0
    err = b""
    while True:
        peak = max(peak, _hwm(p.pid))
        try:
            _out, err = p.communicate(timeout=0.01)
            break
        except subprocess.TimeoutExpired:
            continue
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err.decode(errors='replace')[-2000:]}")
    return dt, peak


def dd_rate(source: str, target: str) -> float:
    size = os.path.getsize(source)
    t = time.perf_counter()
    subprocess.run(["dd", f"if={source}", f"of={target}", "bs=1M", "conv=fdatasync",
                    "status=none"], check=True)
    rate = size / (time.perf_counter() - t)
    os.unlink(target)
    return rate


def warm_up(work: str, size: int, quiet: bool = False) -> None:
    """Write and delete ``size`` bytes. On a virtual machine the first touch of guest
    memory is slow, and memory freed for a while goes cold again (measured here: a 1 GiB dd
    at 290 MB/s, the next one at 1,500 MB/s; file restores of every tool at ~2.8 s of kernel
    time per GiB on cold pages). So the bench warms up once at the start and again before
    each tool's turn; otherwise the machine, not the tool, decides the ratios."""
    t = time.perf_counter()
    zero = bytes(16 * MiB)
    path = os.path.join(work, "warm-up")
    with open(path, "wb") as f:
        for _ in range(size // len(zero)):
            f.write(zero)
    os.unlink(path)
    if not quiet:
        print(f"warm-up: {size >> 30} GiB written and deleted in "
              f"{time.perf_counter() - t:.1f} s", flush=True)


def same_file(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(8 * MiB), fb.read(8 * MiB)
            if x != y:
                return False
            if not x:
                return True


@dataclass
class Result:
    ingest: float = 0.0          # MB/s over all backups of the input
    restore: float = 0.0         # MB/s of the restore into a new file
    stream: float = 0.0          # MB/s of the restore as a stream (to /dev/null)
    disk: int = 0                # bytes on disk after all backups
    rss: int = 0                 # peak RSS, bytes
    restore_sys: float = 0.0     # kernel CPU s per GiB of the process writing the restored
                                 # file (the XBSA client; restic or borg itself)
    cpu: dict = field(default_factory=dict)   # stage -> CPU s (user + system) per GiB
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- the tools
class OpenXBSA:
    name = "openxbsa"

    def __init__(self, work: str) -> None:
        self.home = os.path.join(work, "home")
        self.pool = os.path.join(work, "pool")
        env = _here.env()
        cli = _here.cli()
        subprocess.run(cli + ["stu", "add", "pool", "--kind", "dedup", "--path", self.pool,
                              "--home", self.home], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(cli + ["policy", "modify", "openxbsa-default", "--stunit", "pool",
                              "--home", self.home], check=True, env=env, stdout=subprocess.DEVNULL)
        # the socket in a short directory of its own: a Unix socket path has at most 107
        # bytes, and --dir may be deep
        self.sock_dir = tempfile.mkdtemp(prefix="oxb-")
        sock = os.path.join(self.sock_dir, "xbsa.sock")
        self.address = f"unix:{sock}"
        self.proc = subprocess.Popen(cli + ["server", "--home", self.home, "--listen",
                                            self.address, "--log-level", "WARNING"], env=env)
        for _ in range(400):
            if os.path.exists(sock):
                break
            if self.proc.poll() is not None:
                shutil.rmtree(self.sock_dir, ignore_errors=True)
                raise RuntimeError(f"the OpenXBSA server exited with {self.proc.returncode}")
            time.sleep(0.05)
        rc, self.h = X.BSAInit(None, X.BSA_ObjectOwner("bench", ""),
                               ["BSA_API_VERSION=1.1.0", f"BSA_SERVICE_HOST={self.address}"])
        self._ok(rc)
        self.copy_ids: list[int] = []

    @staticmethod
    def _ok(rc: int) -> None:
        if rc != X.BSA_RC_SUCCESS:
            raise RuntimeError(f"XBSA call failed: {X.BSAGetLastError()[1]}")

    def backup(self, path: str, name: str) -> float:
        size = os.path.getsize(path)
        buf = bytearray(MiB)
        view = memoryview(buf)
        t = time.perf_counter()
        self._ok(X.BSABeginTxn(self.h))
        d = X.BSA_ObjectDescriptor(objectName=X.BSA_ObjectName("/bench", "/" + name),
                                   copyType=3, objectType=2, resourceType="bench",
                                   estimatedSize=size)
        block = X.BSA_DataBlock32()
        self._ok(X.BSACreateObject(self.h, d, block))
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                block.bufferLen, block.numBytes, block.bufferPtr = MiB, n, view[:n]
                self._ok(X.BSASendData(self.h, block))
        self._ok(X.BSAEndData(self.h))
        self._ok(X.BSAEndTxn(self.h, X.BSA_Vote_COMMIT))
        self.copy_ids.append(d.copyId)
        return time.perf_counter() - t

    def restore(self, target: str) -> float:
        buf = bytearray(MiB)
        view = memoryview(buf)
        t = time.perf_counter()
        self._ok(X.BSABeginTxn(self.h))
        self._ok(X.BSAGetObject(self.h, X.BSA_ObjectDescriptor(copyId=self.copy_ids[-1]),
                                X.BSA_DataBlock32()))
        rb = X.BSA_DataBlock32(MiB, 0, 0, 0, 0, buf)
        with open(target, "wb", buffering=0) as f:
            while True:
                rc = X.BSAGetData(self.h, rb)
                f.write(view[:rb.numBytes])
                if rc == X.BSA_RC_NO_MORE_DATA:
                    break
                self._ok(rc)
        self._ok(X.BSAEndData(self.h))
        self._ok(X.BSAEndTxn(self.h, X.BSA_Vote_COMMIT))
        return time.perf_counter() - t

    def stream(self) -> float:
        return self.restore("/dev/null")

    def cpu(self) -> float:
        """CPU seconds so far of the server and of this process, the XBSA client."""
        t = os.times()
        return process_cpu(self.proc.pid) + t.user + t.system

    def finish(self) -> tuple[int, int]:
        X.BSATerminate(self.h)
        rss = _hwm(self.proc.pid)
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.sock_dir, ignore_errors=True)
        home_db = [os.path.join(self.home, f) for f in os.listdir(self.home)
                   if f.startswith("catalog.db")]
        return disk_bytes(self.pool, *home_db), rss


class Peer:
    """restic or borg: a repository under the work directory, commands timed one by one."""

    name = ""
    repo = ""
    rss = 0

    def extract(self, args: list[str], target: str) -> float:
        """Run a restore command in an empty directory, move the one file it made."""
        out = os.path.join(os.path.dirname(target), f"{self.name}-out")
        os.makedirs(out)
        dt = self.tool(args, cwd=out)
        (found,) = [os.path.join(r, f) for r, _d, fs in os.walk(out) for f in fs]
        os.replace(found, target)
        shutil.rmtree(out)
        return dt

    def tool(self, args: list[str], cwd: str | None = None) -> float:
        raise NotImplementedError

    def cpu(self) -> float:
        """CPU seconds so far of the tool's commands (reaped children of this process)."""
        t = os.times()
        return t.children_user + t.children_system

    def finish(self) -> tuple[int, int]:
        return disk_bytes(self.repo), self.rss


class Restic(Peer):
    name = "restic"

    def __init__(self, work: str) -> None:
        self.repo = os.path.join(work, "repo")
        self.env = dict(os.environ, RESTIC_PASSWORD="bench-password",
                        RESTIC_CACHE_DIR=os.path.join(work, "cache"))
        self.rss = 0
        self.tool(["init"])

    def tool(self, args: list[str], cwd: str | None = None) -> float:
        dt, rss = run(["restic", "-r", self.repo, "-q"] + args, self.env, cwd)
        self.rss = max(self.rss, rss)
        return dt

    def backup(self, path: str, name: str) -> float:
        return self.tool(["backup", "--host", "bench", os.path.basename(path)],
                         cwd=os.path.dirname(path))

    def restore(self, target: str) -> float:
        return self.extract(["restore", "latest", "--target", "."], target)

    def stream(self) -> float:
        return self.tool(["dump", "latest", "/input.bin"])


class Borg(Peer):
    name = "borg"

    def __init__(self, work: str) -> None:
        self.repo = os.path.join(work, "repo")
        self.env = dict(os.environ, BORG_PASSPHRASE="bench-password",
                        BORG_BASE_DIR=os.path.join(work, "base"),
                        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes")
        self.rss = 0
        self.n = 0
        self.tool(["init", "--encryption", "repokey", self.repo])

    def tool(self, args: list[str], cwd: str | None = None) -> float:
        dt, rss = run(["borg"] + args, self.env, cwd)
        self.rss = max(self.rss, rss)
        return dt

    def backup(self, path: str, name: str) -> float:
        self.n += 1
        return self.tool(["create", f"{self.repo}::b{self.n}", os.path.basename(path)],
                         cwd=os.path.dirname(path))

    def restore(self, target: str) -> float:
        return self.extract(["extract", f"{self.repo}::b{self.n}"], target)

    def stream(self) -> float:
        return self.tool(["extract", "--stdout", f"{self.repo}::b{self.n}"])


TOOLS = {"openxbsa": OpenXBSA, "restic": Restic, "borg": Borg}


def best_of(a: Result | None, b: Result) -> Result:
    """Two rounds of one tool as one: the better rates, the worse disk use and memory."""
    if a is None:
        return b
    return Result(ingest=max(a.ingest, b.ingest), restore=max(a.restore, b.restore),
                  stream=max(a.stream, b.stream), disk=max(a.disk, b.disk),
                  rss=max(a.rss, b.rss),
                  restore_sys=(a if a.restore >= b.restore else b).restore_sys,
                  cpu={stage: min(a.cpu[stage], b.cpu[stage]) for stage in a.cpu})


def kernel_seconds() -> float:
    """System CPU time of this process and of its reaped children (restic, borg)."""
    t = os.times()
    return t.system + t.children_system


def measure(tool_cls, work: str, inputs: list[str], stage: str) -> Result:
    """Back up ``inputs`` in turn (one object/file name, as a daily dump is), restore the
    last, check it byte for byte."""
    os.makedirs(work)
    tool = tool_cls(work)
    total = 0
    seconds = 0.0
    c0 = tool.cpu()
    for path in inputs:
        os.replace(path, os.path.join(stage, "input.bin"))     # the same name every day
        try:
            seconds += tool.backup(os.path.join(stage, "input.bin"), "input.bin")
        finally:
            os.replace(os.path.join(stage, "input.bin"), path)
        total += os.path.getsize(path)
    c1 = tool.cpu()
    target = os.path.join(work, "restored.bin")
    k0 = kernel_seconds()
    rsec = tool.restore(target)
    ksec = kernel_seconds() - k0
    c2 = tool.cpu()
    if not same_file(target, inputs[-1]):
        raise RuntimeError(f"{tool.name} restored different bytes")
    os.unlink(target)
    c3 = tool.cpu()
    ssec = tool.stream()
    c4 = tool.cpu()
    disk, rss = tool.finish()
    size = os.path.getsize(inputs[-1])
    gib = size / (1 << 30)
    return Result(ingest=total / seconds / 1e6, restore=size / rsec / 1e6, disk=disk, rss=rss,
                  stream=size / ssec / 1e6, restore_sys=ksec / gib,
                  cpu={"ingest": (c1 - c0) / (total / (1 << 30)), "restore": (c2 - c1) / gib,
                       "stream": (c4 - c3) / gib})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=None, help="work directory (default: a new temp dir)")
    ap.add_argument("--scale", type=float, default=1.0, help="input size factor (1.0 = issue)")
    ap.add_argument("--only", default="random,dup,text,daily")
    ap.add_argument("--tools", default="openxbsa,restic,borg")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds per input, alternating the tools' order; each tool's best "
                         "rate is compared (its largest disk use and RSS, its least CPU)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="openxbsa-vs-peers-", dir=args.dir)
    tools = []
    for t in args.tools.split(","):
        if t != "openxbsa" and shutil.which(t) is None:
            print(f"{t}: not installed, left out (Debian: apt-get install "
                  f"{'borgbackup' if t == 'borg' else t})")
            continue
        tools.append(t)
    warm_up(work, int(12 * (1 << 30) * min(1.0, args.scale)))
    rng = random.Random(20261124)
    gib = int((1 << 30) * args.scale) // (16 * MiB) * (16 * MiB)
    inputs_dir = os.path.join(work, "inputs")
    stage = os.path.join(work, "stage")
    os.makedirs(inputs_dir)
    os.makedirs(stage)
    results: dict[str, dict[str, Result]] = {}
    raw_disk = raw_cold = 0.0
    try:
        for kind in args.only.split(","):
            t = time.perf_counter()
            if kind == "daily":
                inputs = gen_daily(inputs_dir, gib // 4, rng)
            else:
                path = os.path.join(inputs_dir, f"{kind}.bin")
                {"random": gen_random, "dup": gen_dup, "text": gen_text}[kind](path, gib, rng)
                inputs = [path]
            print(f"[{kind}] inputs generated in {time.perf_counter() - t:.1f} s", flush=True)
            if kind == "random":
                raw_disk = dd_rate(inputs[0], os.path.join(work, "dd.out")) / 1e6
            results[kind] = {}
            for rep in range(args.repeat):
                # each round in the other order: a VM slowing down or speeding up over the
                # minutes of a round favours no tool
                for name in (tools if rep % 2 == 0 else tools[::-1]):
                    warm_up(work, int((3 << 30) * min(1.0, args.scale)), quiet=True)
                    r = measure(TOOLS[name], os.path.join(work, f"{kind}-{name}"), inputs,
                                stage)
                    label = f"{name:9}" if args.repeat == 1 else f"{name:9} #{rep + 1}"
                    print(f"[{kind}] {label} ingest {r.ingest:7.1f} MB/s  restore "
                          f"{r.restore:7.1f} MB/s (stream {r.stream:7.1f})  disk "
                          f"{r.disk / 1e6:8.1f} MB  peak RSS {r.rss / 1e6:6.1f} MB  "
                          f"restore kernel {r.restore_sys:4.2f} s/GiB  CPU s/GiB "
                          f"{cpu_text(r)}", flush=True)
                    shutil.rmtree(os.path.join(work, f"{kind}-{name}"))
                    results[kind][name] = best_of(results[kind].get(name), r)
            if args.repeat > 1:
                for name, r in results[kind].items():
                    print(f"[{kind}] {name:9} best: ingest {r.ingest:7.1f}  restore "
                          f"{r.restore:7.1f}  stream {r.stream:7.1f}  (largest disk "
                          f"{r.disk / 1e6:.1f} MB, RSS {r.rss / 1e6:.1f} MB; least CPU "
                          f"s/GiB {cpu_text(r)})", flush=True)
            if kind == "random" and raw_disk:
                raw_after = dd_rate(inputs[0], os.path.join(work, "dd.out")) / 1e6
                raw_disk = max(raw_disk, raw_after)
                print(f"[{kind}] raw disk write (dd conv=fdatasync, better of two): "
                      f"{raw_disk:.1f} MB/s", flush=True)
                # for reading the ratio, not for the target: dd meets the memory the tools
                # meet (on a VM that hands free memory back, cold after a few seconds idle)
                time.sleep(COLD_AFTER)
                raw_cold = dd_rate(inputs[0], os.path.join(work, "dd.out")) / 1e6
                print(f"[{kind}] raw disk write after {COLD_AFTER:g} s idle: {raw_cold:.1f} MB/s "
                      f"(not the target's yardstick)", flush=True)
            for p in inputs:
                os.unlink(p)
        report(results, raw_disk, raw_cold)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": machine(), "raw_disk_mbps": raw_disk,
                           "raw_disk_cold_mbps": raw_cold,
                           "results": {k: {t: vars(r) for t, r in v.items()}
                                       for k, v in results.items()}}, f, indent=2)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def machine() -> str:
    """CPUs and model: the CPU-bound stages (cutting, hashing, zstd) scale with the first."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f
                          if ln.startswith("model name")), model)
    except OSError:
        pass
    text = f"{os.cpu_count()} CPUs ({model}), shared by the client and the server/tool"
    return text + free_page_reporting()


def free_page_reporting() -> str:
    """On a VM whose kernel reports free memory to the host (virtio free page reporting),
    memory free for a moment goes back to the host and its next first touch faults there:
    buffered file writes then cost every tool several times the kernel time."""
    params = "/sys/module/page_reporting/parameters"
    try:
        with open(f"{params}/reported_kib") as f:
            reported = int(f.read())
        with open(f"{params}/page_reporting_order") as f:
            order = int(f.read())
    except (OSError, ValueError):
        return ""
    if reported == 0:
        return ""
    return (f"; free page reporting on (blocks of {4 << order} KiB, "
            f"{reported >> 20} GiB handed back to the host so far)")


def cpu_text(r: Result) -> str:
    return " / ".join(f"{r.cpu[stage]:.2f}" for stage in ("ingest", "restore", "stream"))


def report(results: dict[str, dict[str, Result]], raw_disk: float,
           raw_cold: float = 0.0) -> None:
    print(f"\nmachine: {machine()}")
    print("ratios (OpenXBSA / peer; targets from issue #6)")
    checks = []
    for kind, by_tool in results.items():
        ours = by_tool.get("openxbsa")
        peers = {k: v for k, v in by_tool.items() if k != "openxbsa"}
        if ours is None:
            continue
        for name, r in peers.items():
            print(f"  {kind:7} vs {name:7} ingest x{ours.ingest / r.ingest:5.2f}   restore "
                  f"x{ours.restore / r.restore:5.2f} (stream x{ours.stream / r.stream:5.2f})"
                  f"   disk x{ours.disk / r.disk:5.3f}")
        # where a file restore's time goes: on a VM whose page-cache writes fault into the
        # host, the writer's own kernel time can be most of the wall time, for every tool
        print(f"  {kind:7} restore into a file, kernel s/GiB of the writing process "
              f"(wall s/GiB): " + ", ".join(
                  f"{name} {r.restore_sys:.2f} ({(1 << 30) / 1e6 / r.restore:.2f})"
                  for name, r in by_tool.items() if r.restore))
        # what each tool's work costs, whatever the VM's speed this minute: on a machine of
        # N CPUs a tool cannot go faster than N GiB per (CPU s/GiB) seconds, so 2x the rate of
        # a tool that runs on one CPU needs no more CPU per GiB than it
        print(f"  {kind:7} CPU s/GiB ingest / restore / stream (OpenXBSA: server and client): "
              + ", ".join(f"{name} {cpu_text(r)}" for name, r in by_tool.items()))
        if peers:
            if kind == "random":
                checks.append((f"{kind}: ingest ahead of both",
                               all(ours.ingest > r.ingest for r in peers.values())))
            else:
                checks.append((f"{kind}: ingest >= 2x each peer",
                               all(ours.ingest >= 2 * r.ingest for r in peers.values())))
            for how in ("restore", "stream"):
                fastest = max(getattr(r, how) for r in peers.values())
                mine = getattr(ours, how)
                if kind == "dup":
                    checks.append((f"{kind}: {how} >= the faster peer", mine >= fastest))
                else:
                    checks.append((f"{kind}: {how} >= 1.5x the faster peer",
                                   mine >= 1.5 * fastest))
            smallest = min(r.disk for r in peers.values())
            checks.append((f"{kind}: disk <= 1.05x the smaller peer", ours.disk <= 1.05 * smallest))
        if kind == "random" and raw_disk:
            print(f"  random  ingest / raw disk write x{ours.ingest / raw_disk:.2f}"
                  + (f" (/ the same dd after {COLD_AFTER:g} s idle x{ours.ingest / raw_cold:.2f})"
                     if raw_cold else ""))
            checks.append(("random: ingest >= 0.8x raw disk write", ours.ingest >= 0.8 * raw_disk))
        checks.append((f"{kind}: server peak RSS < 300 MB", ours.rss < 300e6))
    print("\ntargets")
    for what, met in checks:
        print(f"  {'met   ' if met else 'MISSED'} {what}")


if __name__ == "__main__":
    main()
