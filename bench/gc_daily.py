#!/usr/bin/env python3
"""How much a dedup pool stores for daily database dumps under a retention, with and
without the repack's blob rewrite (issue #6, garbage collection).

    python bench/gc_daily.py [--size-mib 64] [--days 21] [--keep 7] [--change 0.02]

A database of 8 KiB random pages changes ``--change`` of its pages a day; each day's dump
is backed up into one pool, images older than ``--keep`` days are deleted and the pool is
collected, as the server does. Printed: bytes stored against the unique bytes the kept
images reference (1.00 would be no garbage at all), once with blobs copied whole
(collection by blob) and once with mostly dead blobs rewritten (the default).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile

import _here  # noqa: E402, F401  (this tree first on the path)

from openxbsa.storage import dedup  # noqa: E402

PAGE = 8192


def run(work: str, rewrite_below: float, args: argparse.Namespace) -> dict:
    dedup.REWRITE_BELOW = rewrite_below
    unit = dedup.DedupStorageUnit("bench", os.path.join(work, "pool"),
                                  key_dir=os.path.join(work, "keys"))
    rng = random.Random(5)
    pages = args.size_mib * (1 << 20) // PAGE
    db = bytearray(rng.randbytes(pages * PAGE))
    kept: list[str] = []
    try:
        for day in range(args.days):
            for _ in range(int(pages * args.change)):
                i = rng.randrange(pages)
                db[i * PAGE:(i + 1) * PAGE] = rng.randbytes(PAGE)
            w = unit.open_writer(f"day_{day}")
            w.begin_object()
            w.write(db)
            w.end_object()
            w.commit()
            kept.append(w.location)
            if len(kept) > args.keep:
                unit.delete_image(kept.pop(0))
            unit.collect()
        return unit.usage()
    finally:
        unit.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--keep", type=int, default=7)
    ap.add_argument("--change", type=float, default=0.02)
    args = ap.parse_args()
    print(f"{args.days} daily dumps of {args.size_mib} MiB, {args.change:.0%} of pages changed "
          f"a day, the last {args.keep} kept")
    for label, below in (("blobs copied whole", 0.0),
                         ("mostly dead blobs rewritten", dedup.REWRITE_BELOW)):
        with tempfile.TemporaryDirectory(prefix="openxbsa-gc-daily-") as work:
            u = run(work, below, args)
        print(f"  {label:28} stored {u['stored_bytes'] / 2**20:7.1f} MiB for "
              f"{u['unique_bytes'] / 2**20:7.1f} MiB referenced: "
              f"x{u['stored_bytes'] / u['unique_bytes']:.2f}")


if __name__ == "__main__":
    main()
