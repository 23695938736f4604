"""The README's comparison of ppo.py's surrogate objectives, from the run folders of its sweep.

    python tools/ppo_objectives.py runs/objectives [--last 3]

Finds every ppo.py run folder below the given folder (config.json + evaluations.csv + TensorBoard events), groups
them by --objective, and prints a markdown table: each seed's score (the mean of its last `--last` evaluations),
the mean over seeds with its standard deviation (ddof 1), and d, the KL that `train/kl` logs after each update
(E_t[KL[pi_old, pi_theta]]): its median over a run's updates, as the range over the seeds.
"""

import argparse
import csv
import json
import os
import sys

import numpy as np


def runs(root: str) -> list:
    """(config, evaluations.csv's mean returns, train/kl values) of each ppo.py run folder below root."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = []
    for folder, _, files in sorted(os.walk(root)):
        if "config.json" not in files or "evaluations.csv" not in files:
            continue
        config = json.load(open(os.path.join(folder, "config.json")))
        if config.get("algo") != "ppo":
            continue
        with open(os.path.join(folder, "evaluations.csv")) as f:
            returns = [float(row["mean_return"]) for row in csv.DictReader(f)]
        events = EventAccumulator(folder, size_guidance={"scalars": 0})
        events.Reload()
        kl = [event.value for event in events.Scalars("train/kl")] if "train/kl" in events.Tags()["scalars"] else []
        found.append((config, returns, kl))
    return found


ORDER = ["clip", "adaptive-kl", "fixed-kl", "none"]  # the paper's Table 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="the folder holding the sweep's run folders")
    parser.add_argument("--last", type=int, default=3, help="evaluations averaged into each seed's score")
    args = parser.parse_args()
    found = runs(args.root)
    if not found:
        print(f"ppo_objectives.py: error: no ppo.py run folder below {args.root}", file=sys.stderr)
        sys.exit(2)
    print("| `--objective` | " + " | ".join(f"seed {s}" for s in sorted({c["seed"] for c, _, _ in found}))
          + " | mean over seeds (std) | median d |")
    print("|---" * (len({c["seed"] for c, _, _ in found}) + 3) + "|")
    for objective in sorted({c["objective"] for c, _, _ in found}, key=ORDER.index):
        seeds = sorted((c["seed"], np.mean(r[-args.last:]), np.median(kl) if kl else np.nan)
                       for c, r, kl in found if c["objective"] == objective)
        scores, d = np.array([s[1] for s in seeds]), np.array([s[2] for s in seeds])
        spread = f"{scores.std(ddof=1):.1f}" if len(scores) > 1 else "-"
        print(f"| {objective} | " + " | ".join(f"{score:.1f}" for score in scores)
              + f" | {scores.mean():.1f} ({spread}) | {d.min():.4f}-{d.max():.4f} |")


if __name__ == "__main__":
    main()
