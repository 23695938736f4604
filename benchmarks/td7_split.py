"""An experiment kept for the record: td7.py's critic could compute its l1 on cat(h, zsa, zs) as h W_h + zsa W_zsa +
zs W_zs, the same product, so that no gradient is formed for the fixed encoder's embeddings (6% fewer FLOPs per
update). This times Agent.train() with that forward against td7.py's cat-then-linear (the official form), side by
side in one process: interleaved rounds, best of N. It gained 0-3%, within the machine's noise, so td7.py keeps the
official form.

    python benchmarks/td7_split.py [--threads 1 2] [--steps 60] [--rounds 5]
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import td7  # noqa: E402

CAT_THEN_LINEAR = td7.Critic.forward


def split(self, state, action, zsa, zs):
    """l1 on cat(h, zsa, zs) as h W_h + zsa W_zsa + zs W_zs: no gradient for zs, nor for zsa in the critic's update."""
    sa = torch.cat([state, action], 1).expand(2, -1, -1)
    h = td7.AvgL1Norm(self.l0(sa))
    W_h, W_zsa, W_zs = self.l1.weight.split([h.shape[2], zsa.shape[1], zs.shape[1]], 1)
    q = F.elu(torch.baddbmm(self.l1.bias, h, W_h) + zsa @ W_zsa + zs @ W_zs)
    q = F.elu(self.l2(q))
    return self.l3(q).squeeze(2).t()


def agent():
    torch.manual_seed(0)
    a = td7.Agent(17, 6, td7.Args(), torch.device("cpu"))  # HalfCheetah's shapes
    n, rng = 100_000, np.random.default_rng(0)
    a.replay_buffer.load({"observations": rng.normal(size=(n, 17)), "actions": rng.uniform(-1, 1, (n, 6)),
                          "next_observations": rng.normal(size=(n, 17)), "rewards": rng.normal(size=n),
                          "terminals": rng.random(n) < 0.01})
    return a


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    forms = {"cat, then l1 (td7.py, official)": CAT_THEN_LINEAR, "h W_h + zsa W_zsa + zs W_zs": split}
    agents = {name: agent() for name in forms}
    for name, a in agents.items():  # the same losses from the same weights and batches
        td7.Critic.forward = forms[name]
        torch.manual_seed(1)
        for _ in range(4):
            a.train()
    losses = [float(a.losses["critic_loss"]) for a in agents.values()]
    assert abs(losses[0] - losses[1]) <= 1e-5 * abs(losses[0]), losses
    print(f"td7.py Agent.train(), HalfCheetah shapes, 100k buffer, torch {torch.__version__}, best of {args.rounds}")
    print("| threads | " + " | ".join(forms) + " | speed-up |\n|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        best = dict.fromkeys(forms, 0.0)
        for _ in range(args.rounds):
            for name, a in agents.items():
                td7.Critic.forward = forms[name]
                start = time.perf_counter()
                for _ in range(args.steps):
                    a.train()
                best[name] = max(best[name], args.steps / (time.perf_counter() - start))
        before, after = best.values()
        print(f"| {threads} | {before:.1f} gradient steps/s | {after:.1f} | {after / before:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
