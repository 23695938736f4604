"""LAP sampling cost: the sum tree of lap_buffer.py against the official cumsum + searchsorted.

    python benchmarks/buffer.py [--device cpu] [--threads 2]

Prints, per buffer size N, the time of one sample(256) + update_priority(256) for both, measured
interleaved in the same run. The baseline is the official TD7 code's LAP buffer: a cumulative sum
over all N priorities, a binary search per draw, and a scatter of the new priorities. Both gather
the sampled rows (HalfCheetah-sized: 17-d states, 6-d actions).
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

    def sample(self, batch_size):
        csum = torch.cumsum(self.priority, 0)
        val = torch.rand(size=(batch_size,), device=csum.device) * csum[-1]
        self.ind = torch.searchsorted(csum, val)
        return self.transitions[self.ind].split([17, 6, 17, 1, 1], dim=1)

    def update_priority(self, priority):
        self.priority[self.ind] = priority.reshape(-1).detach()
        self.max_priority = max(float(priority.max()), self.max_priority)


def sum_tree_buffer(n, device):
    buffer = LAPBuffer(17, 6, device, capacity=n)
    buffer.size = n  # the stored rows do not matter for the cost of sampling
    buffer.tree.update(torch.arange(n, device=device), torch.rand(n, device=device) + 0.5)
    return buffer


def time_per_batch(buffer, priority, repeats, device):
    for _ in range(20):
        buffer.sample(256)
        buffer.update_priority(priority)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        buffer.sample(256)
        buffer.update_priority(priority)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


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
          f"torch {torch.__version__}")
    print("| N | sum tree (us) | cumsum + searchsorted (us) | speed-up |")
    print("|---|---|---|---|")
    for n in (10_000, 100_000, 1_000_000):
        priority = torch.rand(256, device=device) + 1.0
        tree, baseline = sum_tree_buffer(n, device), CumsumLAP(n, device)
        repeats = max(50, int(2e7 // n))
        best_tree, best_base = np.inf, np.inf
        for _ in range(args.rounds):  # interleaved, so both see the same machine load
            best_tree = min(best_tree, time_per_batch(tree, priority, repeats * 4, device))
            best_base = min(best_base, time_per_batch(baseline, priority, repeats, device))
        print(f"| {n:,} | {best_tree * 1e6:.0f} | {best_base * 1e6:.0f} | {best_base / best_tree:.1f}x |")


if __name__ == "__main__":
    main()
