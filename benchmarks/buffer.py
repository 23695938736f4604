"""LAP sampling cost: the sum tree of lap_buffer.py against the official cumsum + searchsorted.

    python benchmarks/buffer.py [--device cpu] [--threads 2]

Prints, per buffer size N, the time of one sample(256) + update_priority(256) for both, measured
interleaved in the same run, twice: the priority part alone (draw 256 indices, write 256 new
priorities: what the sum tree replaces) and the whole call (plus gathering the 256 rows, which costs
both the same). The baseline is the official TD7 code's LAP buffer: a cumulative sum over all N
priorities, a binary search per draw, and a scatter of the new priorities; it gathers its rows the
way lap_buffer.py does (HalfCheetah-sized: 17-d states, 6-d actions).
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lap_buffer import LAPBuffer  # noqa: E402


class CumsumLAP:
    """The official TD7 LAP buffer's sampling (buffer.py): O(N) per batch."""

    def __init__(self, n, device):
        self.transitions = torch.zeros(n, 2 * 17 + 6 + 2, device=device)
        self.priority = torch.rand(n, device=device) + 0.5
        self.max_priority = 1.0

    def draw(self, batch_size):
        csum = torch.cumsum(self.priority, 0)
        val = torch.rand(size=(batch_size,), device=csum.device) * csum[-1]
        self.ind = torch.searchsorted(csum, val)
        return self.ind

    def sample(self, batch_size):
        return self.transitions.index_select(0, self.draw(batch_size)).split([17, 6, 17, 1, 1], dim=1)

    def update_priority(self, priority):
        self.priority[self.ind] = priority.reshape(-1).detach()
        self.max_priority = max(float(priority.max()), self.max_priority)


def sum_tree_buffer(n, device):
    buffer = LAPBuffer(17, 6, device, capacity=n)
    buffer.size = n  # the stored rows do not matter for the cost of sampling
    buffer.tree.update(torch.arange(n, device=device), torch.rand(n, device=device) + 0.5)
    buffer.draw = lambda batch_size: buffer.tree.sample(batch_size)
    return buffer


def timed(step, repeats, device):
    for _ in range(20):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def steps(buffer, priority):
    """(priority part only, whole sample + update) as two callables."""
    def priority_part():
        buffer.ind = buffer.draw(256)
        buffer.update_priority(priority)

    def whole():
        buffer.sample(256)
        buffer.update_priority(priority)
    return priority_part, whole


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"LAP sample(256) + update_priority(256), device {device}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; microseconds, best of {args.rounds} interleaved rounds")
    print("| N | priorities: sum tree | priorities: cumsum | speed-up | whole call: sum tree | whole call: cumsum "
          "| speed-up |")
    print("|---|---|---|---|---|---|---|")
    for n in (10_000, 100_000, 1_000_000):
        priority = torch.rand(256, device=device) + 1.0
        tree, baseline = steps(sum_tree_buffer(n, device), priority), steps(CumsumLAP(n, device), priority)
        repeats = max(50, int(2e7 // n))
        best = np.full((2, 2), np.inf)  # [tree, baseline] x [priority part, whole call]
        for _ in range(args.rounds):  # interleaved, so both see the same machine load
            for i, (candidate, r) in enumerate(((tree, repeats * 4), (baseline, repeats))):
                for j in range(2):
                    best[i, j] = min(best[i, j], timed(candidate[j], r, device))
        (tp, tw), (bp, bw) = best * 1e6
        print(f"| {n:,} | {tp:.0f} | {bp:.0f} | {bp / tp:.1f}x | {tw:.0f} | {bw:.0f} | {bw / tw:.1f}x |")


if __name__ == "__main__":
    main()
