#!/usr/bin/env python3
"""Where a dedup backup's CPU goes: one 1 GiB backup (and restores) through a real server,
with the CPU time of each server thread, sampled from /proc while it runs.

    python bench/dedup_threads.py [--input random|text|dup|daily] [--restores N]

(daily: seven 256 MiB versions of a dump backed up in turn, the last one reported and
restored, as bench/vs_peers does.) Prints MB/s for the backup and each stream restore, and for each server thread that worked
(by thread ID, in start order: the session thread, then for a backup the cutter, the two
sealers and the flusher; for a restore the prefetch thread and the two decoders) its user
and system CPU seconds. On 2 vCPUs a stage near the wall time is the bottleneck; the total
against 2 x wall says how much of the machine the pipeline used. Paired runs of two builds
(alternating) are the way to compare them on a noisy VM.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(__file__))

import vs_peers as V  # noqa: E402  (its input generators and OpenXBSA driver)

def thread_times(pid: int) -> dict[int, tuple[float, float, int]]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = V.proc_stat(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue                               # the thread ended meanwhile
        out[int(tid)] = (int(fields[11]) / V.TICK, int(fields[12]) / V.TICK, int(fields[7]))
    return out


class Sampler:
    """Keeps the last CPU times seen of every thread, including threads that end."""

    def __init__(self, pid: int) -> None:
        self.pid, self.seen = pid, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.seen.update(thread_times(self.pid))

    def snapshot(self) -> dict[int, tuple[float, float]]:
        self.seen.update(thread_times(self.pid))
        return dict(self.seen)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def client_cpu() -> float:
    """CPU seconds this process (the XBSA client) has used."""
    t = os.times()
    return t.user + t.system


def report(label: str, seconds: float, size: int, before: dict, after: dict,
           client: float, pid: int) -> None:
    print(f"{label:8} {size / seconds / 1e6:7.0f} MB/s  wall {seconds:5.2f} s"
          f"  client CPU {client:5.2f} s")
    total = 0.0
    for tid in sorted(after):
        u0, s0, f0 = before.get(tid, (0.0, 0.0, 0))
        u, s, f = after[tid][0] - u0, after[tid][1] - s0, after[tid][2] - f0
        if u + s >= 0.02:
            total += u + s
            print(f"         thread {tid}: user {u:5.2f} s  sys {s:5.2f} s"
                  f"  page faults {f:7d}")
    print(f"         server CPU {total:5.2f} s of {2 * seconds:5.2f} s on 2 CPUs,"
          f" peak RSS so far {V._hwm(pid) / 1e6:5.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", choices=["random", "text", "dup", "daily"], default="random")
    ap.add_argument("--restores", type=int, default=1)
    args = ap.parse_args()
    size = 1 << 30
    with tempfile.TemporaryDirectory(prefix="openxbsa-threads-") as work:
        if args.input == "daily":
            *earlier, path = V.gen_daily(work, size // 4, random.Random(1))
            size //= 4
        else:
            earlier, path = [], os.path.join(work, f"{args.input}.bin")
            {"random": V.gen_random, "text": V.gen_text, "dup": V.gen_dup}[args.input](
                path, size, random.Random(1))
        tool = V.OpenXBSA(os.path.join(work, "run"))
        sampler = Sampler(tool.proc.pid)
        try:
            for day in earlier:
                tool.backup(day, "input")
            before, cpu = sampler.snapshot(), client_cpu()
            seconds = tool.backup(path, "input")
            report("backup", seconds, size, before, sampler.snapshot(), client_cpu() - cpu,
                   tool.proc.pid)
            for _ in range(args.restores):
                before, cpu = sampler.snapshot(), client_cpu()
                seconds = tool.stream()
                report("restore", seconds, size, before, sampler.snapshot(), client_cpu() - cpu,
                       tool.proc.pid)
        finally:
            sampler.stop()
            tool.finish()


if __name__ == "__main__":
    main()
