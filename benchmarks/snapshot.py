"""What a snapshot (the resumable state, written every --snapshot-every minutes) costs: seconds and bytes on disk.

    python benchmarks/snapshot.py [--envs HalfCheetah-v4 Humanoid-v4] [--rows 1000000] [--new-rows 18000]

For each environment it builds td7.py's run (td7.Run: agent, environments, run folder in a temporary directory),
fills its LAP buffer with `--rows` random transitions of that environment's shapes, and times Run.save() three
times: the first snapshot, which writes every row; one after `--new-rows` more transitions (18,000: about ten
minutes of td7.py on these CPUs), which writes only the files of rows that changed; and one with nothing new
(networks, optimizers, priorities, environments and random generators only). The folder's size is measured after
each. The times include the fsync of every file written, so they are what a disk really costs.
"""

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import td7  # noqa: E402


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def measure(env_id: str, rows: int, new_rows: int, root: str) -> list:
    args = td7.Args(env=env_id, buffer_size=rows, run=td7.RunFlags(run_dir=root, progress=False))
    with contextlib.redirect_stdout(io.StringIO()):  # its "td7 on ..." line
        run = td7.Run(args, torch.device("cpu"))
    buffer = run.agent.replay_buffer
    generator = torch.Generator().manual_seed(0)
    for start in range(0, rows, 100_000):  # random rows, written in blocks (as if added one by one)
        stop = min(start + 100_000, rows)
        buffer.transitions[start:stop] = torch.randn(stop - start, buffer.width, generator=generator)
    buffer.tree.update(torch.arange(rows), torch.rand(rows, generator=generator, dtype=torch.float64) + 0.1)
    buffer.ptr, buffer.size, buffer.added = 0, rows, rows
    results = []
    for label, added in (("first snapshot (every row)", 0), (f"after {new_rows:,} new transitions", new_rows),
                         ("nothing new", 0)):
        state = np.zeros(buffer.state_dim)
        for _ in range(added):
            buffer.add(state, np.zeros(buffer.action_dim), state, 0.0, False)
        start = time.perf_counter()
        run.save()
        seconds = time.perf_counter() - start
        results.append((buffer.width, label, seconds, folder_bytes(run.path)))
    run.release()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v4", "Humanoid-v4"])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--new-rows", type=int, default=18_000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"td7.py snapshots, {args.rows:,}-transition LAP buffer, torch {torch.__version__}, files in "
          f"{tempfile.gettempdir()}")
    print("| environment | row (floats) | snapshot | seconds | run folder on disk |")
    print("|---|---|---|---|---|")
    for env_id in args.envs:
        root = tempfile.mkdtemp(prefix="snapshot-bench-")
        try:
            for width, label, seconds, size in measure(env_id, args.rows, args.new_rows, root):
                print(f"| {env_id} | {width} | {label} | {seconds:.2f} | {size / 2 ** 20:,.0f} MiB |", flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
