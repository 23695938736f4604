"""Learning curves and final-performance tables from run folders (config.json + evaluations.csv).

Finds every run folder under the given directories (recursively), groups runs by algorithm (config
"algo") and environment (config "env"; offline runs add their dataset's name), and writes one figure as
PNG and PDF: one panel per environment, the mean evaluation over seeds per algorithm against steps,
with a 95% percentile-bootstrap confidence band across seeds and the seed count in the legend.

Runs of different lengths or evaluation steps are put on the union of their evaluation steps: each
seed is interpolated linearly inside its own range (exact where it evaluated) and never extrapolated,
so a partial run counts only up to its last evaluation.

It prints two markdown tables:
  - final performance per environment and algorithm: each seed's score is the mean of its last 10
    evaluations (Fujimoto's protocol for TD3), then the mean over seeds, its 95% bootstrap CI and the
    seed count;
  - across environments, the interquartile mean (IQM) of normalized final scores per algorithm with a
    95% stratified-bootstrap CI, as rliable computes it (Agarwal et al., NeurIPS 2021): the IQM is
    scipy.stats.trim_mean(scores, 0.25) over all runs of all environments (sort, drop floor(n / 4)
    scores at each end, average the rest); the bootstrap resamples runs with replacement within each
    environment. Written with numpy only.

Normalized scores (0 = reference minimum, 100 = reference maximum), chosen per environment:
  1. the runs' own `normalized_score` column when every run of the environment has one (offline runs:
     D4RL's 100 (R - random) / (expert - random));
  2. else `--normalize d4rl` (D4RL's random and expert returns for halfcheetah, hopper, walker2d, ant)
     or `--normalize FILE.json` ({"Hopper-v4": [min, max], ...}) when it covers the environment;
  3. else 100 (R - R0) / (R_best - R0), with R0 the mean first evaluation (step 0: the untrained
     policy) of the environment's runs and R_best the best algorithm's mean final score.
The output says which one each environment used.

Published numbers (--published FILE, or a published.json in a root or its parent folder, as in the results
store benchmarks/results/): a JSON file {"sources": {name: {...}}, "numbers": [{algo, env, step, mean, interval,
source}, ...]}, each source naming its citation, its protocol, the score it reports and what its interval is.
Each number whose algorithm and environment have runs is marked on its panel at its step (a black-edged point
with its interval; where the source scores training episodes, our runs' own score of that kind is drawn as it goes,
dashed, beside the evaluation curve), and a third table sets our score beside it, computed the way the source
computes its own:
  - "at_step": the evaluation at that step (e.g. the TD7 paper's Table 1 at 300k);
  - "final_window" with "steps": W: the mean of the evaluations in the last W environment steps of the run;
  - "last_episodes" with "episodes": N: the mean return of the run's last N training episodes (CleanRL's score:
    episodes of the exploring policy as it learns, not evaluations), read from the run folder's episodes.csv (the
    results store) or else its TensorBoard log (train/episode_return and train/episode_length, which the scripts
    log at the step each episode ends);
then the mean over seeds with a Student-t 95% confidence interval (mean +- t(0.975, n - 1) s / sqrt(n), honest for
3 seeds where a bootstrap interval is too narrow), each seed's score, and whether our mean lies inside, above or
below the published mean +- interval.

A suite of the results store (a root holding suite.json) needs no other argument: its figure goes to
<root>/curves.png and its tables to <root>/table.md.

    python tools/plot.py runs/ --out plots/mujoco
    python tools/plot.py sweeps/a sweeps/b --normalize d4rl --group-by lap
    python tools/plot.py benchmarks/results/td7-300k
"""

import argparse
import csv
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweep import report as say  # noqa: E402  (a line of output; a reader that went away costs nothing)

# D4RL's reference returns (random, expert), the same as td3_bc.py and td7.py use for the normalized score.
D4RL_REF_RETURNS = {"halfcheetah": (-280.178953, 12135.0), "hopper": (-20.272305, 3234.3),
                    "walker2d": (1.629008, 4592.3), "ant": (-325.6, 3879.7)}


class UsageError(Exception):
    """Bad input: one line on stderr, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Reading run folders


class Run:
    """One run folder: its config and its evaluations (steps, mean returns, normalized scores or None)."""

    def __init__(self, path: str, config: dict, steps: np.ndarray, returns: np.ndarray, normalized):
        self.path, self.config = path, config
        self.steps, self.returns, self.normalized = steps, returns, normalized
        self.algo = str(config.get("algo", "?"))
        self.seed = config.get("seed")
        env = str(config.get("env"))
        dataset = config.get("dataset")
        self.env = f"{env} ({dataset_name(dataset)})" if dataset else env
        self.offline = bool(dataset) or bool(config.get("offline", False))
        self.finished = len(steps) > 0 and is_finished(config, int(steps[-1]))
        self.label = self.algo

    @property
    def last_step(self) -> int:
        return int(self.steps[-1])


def is_finished(config: dict, last_step: int) -> bool:
    """Whether the run's last evaluation is the last one its schedule has: step >= eval_freq * floor(total /
    eval_freq), i.e. total_timesteps when eval_freq divides it (the scripts evaluate at multiples of eval_freq)."""
    total, freq = config.get("total_timesteps"), config.get("eval_freq")
    if not isinstance(total, (int, float)):
        return False
    if isinstance(freq, (int, float)) and 0 < freq <= total:
        return last_step >= (total // freq) * freq
    return last_step >= total


def read_episodes(path: str):
    """A run folder's training episodes as arrays (steps, returns, lengths), in the order they ended: its
    episodes.csv (step,return,length: the results store) or else its TensorBoard log. A resumed run's log holds what
    the killed process logged after the resumable state too; TensorBoard drops it (the scripts open the log with a
    purge step), so the episodes are those of one uninterrupted run. ValueError when there are none to read."""
    csv_path = os.path.join(path, "episodes.csv")
    if os.path.isfile(csv_path):
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != ["step", "return", "length"]:
                raise ValueError(f"{csv_path} has no step,return,length header")
            rows = [(int(r["step"]), float(r["return"]), int(r["length"])) for r in reader]
        steps, returns, lengths = zip(*rows) if rows else ((), (), ())
    else:
        if not any(name.startswith("events.out.tfevents.") for name in os.listdir(path)):
            raise ValueError(f"{path} has neither an episodes.csv nor a TensorBoard log")
        import logging

        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        logging.getLogger("tensorboard").setLevel(logging.ERROR)  # it warns of each purge, which is what we want
        log = EventAccumulator(path, size_guidance={"scalars": 0})  # 0: keep every point
        log.Reload()
        tags = log.Tags()["scalars"]
        if "train/episode_return" not in tags:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)  # no episode ended
        returns, lengths = log.Scalars("train/episode_return"), log.Scalars("train/episode_length")
        if [e.step for e in returns] != [e.step for e in lengths]:
            raise ValueError(f"the TensorBoard log of {path} has episode returns and lengths at different steps")
        steps = [e.step for e in returns]
        returns, lengths = [e.value for e in returns], [int(e.value) for e in lengths]
    return np.asarray(steps, np.int64), np.asarray(returns, np.float64), np.asarray(lengths, np.int64)


def dataset_name(path: str) -> str:
    name = os.path.basename(os.path.normpath(str(path)))
    for ext in (".hdf5", ".h5"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name


def read_run(path: str) -> Run:
    """A Run from a folder holding config.json and evaluations.csv; ValueError when they cannot be read."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    if not isinstance(config, dict):
        raise ValueError("config.json is not a JSON object")
    steps, returns, normalized = [], [], []
    with open(os.path.join(path, "evaluations.csv"), newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "step" not in reader.fieldnames or "mean_return" not in reader.fieldnames:
            raise ValueError("evaluations.csv has no step and mean_return columns")
        has_normalized = "normalized_score" in reader.fieldnames
        for row in reader:
            steps.append(int(float(row["step"])))
            returns.append(float(row["mean_return"]))
            if has_normalized:
                normalized.append(float(row["normalized_score"]))
    order = np.argsort(steps, kind="stable")
    steps, returns = np.asarray(steps, np.int64)[order], np.asarray(returns, np.float64)[order]
    normalized = np.asarray(normalized, np.float64)[order] if has_normalized else None
    return Run(path, config, steps, returns, normalized)


def find_runs(roots, group_by=(), warn=print):
    """Every run folder under roots with at least one evaluation, one per (label, env, seed): when a seed
    was run more than once (e.g. an interrupted run restarted) the run that got furthest is kept."""
    runs = []
    for root in roots:
        if not os.path.isdir(root):
            raise UsageError(f"{root} is not a directory: pass folders that hold run folders (config.json + "
                             "evaluations.csv)")
        found = 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            if "config.json" in filenames and "evaluations.csv" in filenames:
                try:
                    run = read_run(dirpath)
                except (OSError, ValueError, KeyError) as e:
                    warn(f"skipping {dirpath}: {e}")
                    continue
                if len(run.steps) == 0:
                    continue
                if group_by:
                    run.label = run.algo + " " + " ".join(f"{k}={run.config.get(k)}" for k in group_by)
                runs.append(run)
                found += 1
        if found == 0:
            raise UsageError(f"no run folders (config.json + evaluations.csv with an evaluation) under {root}")
    best = {}
    for run in runs:
        key = (run.label, run.env, json.dumps(run.seed))
        kept = best.get(key)
        if kept is not None:
            used, dropped = (run, kept) if (run.last_step, run.path) > (kept.last_step, kept.path) else (kept, run)
            differ = settings_diff(used.config, dropped.config)
            warn(f"seed {run.seed} of {run.label} on {run.env} appears twice: using {used.path}, not {dropped.path}"
                 + (f" (they differ in {differ}: --group-by tells such runs apart)" if differ else ""))
            run = used
        best[key] = run
    return sorted(best.values(), key=lambda r: (r.env, r.label, str(r.seed), r.path))


# Config keys that do not change what a run learns (where it ran, how it was watched, library versions).
NOT_SETTINGS = {"run_dir", "torch_threads", "device", "resume", "save_model", "eval_only", "no_progress", "progress",
                "track", "capture_video", "video_every", "wandb_project", "wandb_entity", "python", "torch",
                "gymnasium", "mujoco", "numpy", "git_commit", "git_dirty", "compile", "cudagraphs"}


def settings_diff(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if k not in NOT_SETTINGS and a.get(k) != b.get(k))
    return ", ".join(f"{k} ({a.get(k)} vs {b.get(k)})" for k in keys[:4]) + (", ..." if len(keys) > 4 else "")


# ---------------------------------------------------------------------------------------------
# Statistics (numpy only)


def bootstrap_mean_ci(values, reps: int, rng: np.random.Generator, confidence: float = 0.95):
    """Mean of values and its percentile-bootstrap CI (resampling values with replacement)."""
    values = np.asarray(values, np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    means = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - confidence), 50 * (1 + confidence)])
    return mean, float(low), float(high)


def iqm(scores, axis=-1):
    """Interquartile mean: scipy.stats.trim_mean(scores, 0.25) along axis, i.e. sort, drop floor(n / 4)
    values at each end and average the rest (IQM of 1..8 = mean of 3, 4, 5, 6 = 4.5)."""
    scores = np.sort(np.asarray(scores, np.float64), axis=axis)
    n = scores.shape[axis]
    cut = int(0.25 * n)
    return np.take(scores, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def stratified_bootstrap_iqm(scores_per_env, reps: int, rng: np.random.Generator, confidence: float = 0.95):
    """IQM over all runs of all environments, and its CI from a bootstrap that resamples runs with
    replacement within each environment (rliable's StratifiedBootstrap, percentile interval)."""
    groups = [np.asarray(s, np.float64) for s in scores_per_env if len(s)]
    point = float(iqm(np.concatenate(groups)))
    samples = np.concatenate([g[rng.integers(0, len(g), size=(reps, len(g)))] for g in groups], axis=1)
    low, high = np.percentile(iqm(samples, axis=1), [50 * (1 - confidence), 50 * (1 + confidence)])
    return point, float(low), float(high)


def curve(runs, values_of, reps: int, rng: np.random.Generator, confidence: float = 0.95):
    """(grid, mean, low, high, seeds) over the union of the runs' evaluation steps: each run is
    interpolated inside its own range and left out beyond it."""
    grid = np.unique(np.concatenate([r.steps for r in runs]))
    table = np.full((len(runs), len(grid)), np.nan)
    for i, run in enumerate(runs):
        inside = (grid >= run.steps[0]) & (grid <= run.steps[-1])
        table[i, inside] = np.interp(grid[inside], run.steps, values_of(run))
    covered = ~np.isnan(table)
    mean, low, high = np.nanmean(table, axis=0), np.empty(len(grid)), np.empty(len(grid))
    # One bootstrap draw per set of covering seeds (few sets: seeds drop out as partial runs end).
    patterns, inverse = np.unique(covered.T, axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        cols = np.flatnonzero(inverse.reshape(-1) == p)
        sub = table[pattern][:, cols]
        if sub.shape[0] < 2:
            low[cols] = high[cols] = mean[cols]
            continue
        draws = sub[rng.integers(0, sub.shape[0], size=(reps, sub.shape[0]))].mean(axis=1)
        low[cols], high[cols] = np.percentile(draws, [50 * (1 - confidence), 50 * (1 + confidence)], axis=0)
    return grid, mean, low, high, covered.sum(axis=0)


def training_curve(runs, episodes: int):
    """(grid, mean over runs) of CleanRL's score as training goes: at each evaluation step, the mean return of the
    last `episodes` training episodes that had ended by then; each run within its own range (no band: a line)."""
    grid = np.unique(np.concatenate([r.steps for r in runs]))
    table = np.full((len(runs), len(grid)), np.nan)
    for i, run in enumerate(runs):
        steps, returns, _ = read_episodes(run.path)
        ends = np.searchsorted(steps, run.steps, side="right")  # episodes ended by each evaluation step
        sums, starts = np.concatenate([[0.0], np.cumsum(returns)]), np.maximum(ends - episodes, 0)
        keep = ends > 0
        if keep.sum() > 0:
            score = (sums[ends[keep]] - sums[starts[keep]]) / (ends[keep] - starts[keep])
            inside = (grid >= run.steps[keep][0]) & (grid <= run.steps[keep][-1])
            table[i, inside] = np.interp(grid[inside], run.steps[keep], score)
    covered = ~np.isnan(table).all(axis=0)
    return grid[covered], np.nanmean(table[:, covered], axis=0)


def final_score(values: np.ndarray, last: int) -> float:
    """Mean of the last `last` evaluations (all of them when there are fewer)."""
    return float(np.mean(values[-last:]))


# ---------------------------------------------------------------------------------------------
# Tables


def load_reference(spec):
    """--normalize: None, 'd4rl' or a JSON file {env: [min, max]} -> (lookup(env) -> (min, max) or None, name)."""
    if spec is None:
        return (lambda env: None), None
    if spec == "d4rl":
        table, name = D4RL_REF_RETURNS, "D4RL random/expert returns"
    else:
        try:
            with open(spec) as f:
                raw = json.load(f)
            table = {}
            for env, ref in raw.items():
                if isinstance(ref, dict):
                    ref = (ref["ref_min_score"], ref["ref_max_score"])
                low, high = float(ref[0]), float(ref[1])
                if not high > low:
                    raise ValueError(f"{env}: max {high} is not above min {low}")
                table[env] = (low, high)
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            raise UsageError(f"cannot read --normalize {spec}: expected d4rl or a JSON file "
                             f'{{"Hopper-v4": [min, max], ...}} ({type(e).__name__}: {e})')
        name = f"reference returns from {spec}"

    def lookup(env):
        base = env.split(" (")[0]
        for key in (env, base, base.split("-")[0], base.split("-")[0].lower()):
            if key in table:
                return table[key]
        return None

    return lookup, name


def summarize(runs, last: int, reps: int, rng: np.random.Generator, normalize=None):
    """Final performance per (env, label) and the IQM of normalized scores per label; a dict of rows."""
    lookup, ref_name = load_reference(normalize)
    envs = sorted({r.env for r in runs})
    labels = sorted({r.label for r in runs})
    rows, methods, normalized = [], {}, {}  # normalized[(env, label)] = per-seed normalized final scores
    for env in envs:
        env_runs = [r for r in runs if r.env == env]
        finals = {}
        for label in labels:
            group = [r for r in env_runs if r.label == label]
            if not group:
                continue
            scores = np.array([final_score(r.returns, last) for r in group])
            mean, low, high = bootstrap_mean_ci(scores, reps, rng)
            finals[label] = (group, scores)
            last_steps = sorted(r.last_step for r in group)
            rows.append({"env": env, "algo": label, "mean": mean, "low": low, "high": high, "seeds": len(group),
                         "partial": sum(not r.finished for r in group), "scores": scores,
                         "steps": (last_steps[0], last_steps[-1])})
        ref = lookup(env)
        if all(r.normalized is not None for r in env_runs):
            methods[env] = "the runs' normalized_score column"
            for label, (group, _) in finals.items():
                normalized[(env, label)] = np.array([final_score(r.normalized, last) for r in group])
        elif ref is not None:
            methods[env] = f"{ref_name}: min {ref[0]:g}, max {ref[1]:g}"
            for label, (_, scores) in finals.items():
                normalized[(env, label)] = 100.0 * (scores - ref[0]) / (ref[1] - ref[0])
        elif len(finals) < 2:  # its own best final mean would be 100 by definition
            methods[env] = ("none: one algorithm and no reference returns (pass --normalize), left out of the IQM")
        else:
            r0 = float(np.mean([r.returns[0] for r in env_runs]))
            best_label, best = max(((label, s.mean()) for label, (_, s) in finals.items()), key=lambda x: x[1])
            if best > r0:
                methods[env] = (f"first evaluation (mean {r0:.1f}) to the best final mean ({best_label}, "
                                f"{best:.1f})")
                for label, (_, scores) in finals.items():
                    normalized[(env, label)] = 100.0 * (scores - r0) / (best - r0)
            else:
                methods[env] = "none: no algorithm improved on the first evaluation (left out of the IQM)"
    aggregate = []
    for label in labels:
        per_env = [normalized[(env, label)] for env in envs if (env, label) in normalized]
        if not per_env:
            continue
        point, low, high = stratified_bootstrap_iqm(per_env, reps, rng)
        aggregate.append({"algo": label, "iqm": point, "low": low, "high": high, "envs": len(per_env),
                          "runs": sum(len(s) for s in per_env)})
    few = sum(len(r.steps) <= last for r in runs)
    return {"rows": rows, "aggregate": aggregate, "methods": methods, "normalized": normalized, "few": few}


def format_tables(summary, last: int) -> str:
    lines = [f"## Final performance (mean of the last {last} evaluations per seed; mean over seeds, "
             "95% bootstrap CI)", "",
             "| env | algorithm | final return | 95% CI | seeds | last step |", "|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        ci = f"[{row['low']:.1f}, {row['high']:.1f}]" if row["seeds"] > 1 else "n/a (1 seed)"
        seeds = f"{row['seeds']}" + (f" ({row['partial']} partial)" if row["partial"] else "")
        lo, hi = row["steps"]
        steps = f"{lo}" if lo == hi else f"{lo}-{hi}"
        lines.append(f"| {row['env']} | {row['algo']} | {row['mean']:.1f} | {ci} | {seeds} | {steps} |")
    if summary.get("few"):
        lines += ["", f"Note: {summary['few']} run(s) have no more than {last} evaluations: their final score averages "
                      "all of them, step 0 included (--last sets how many)."]
    lines += ["", "## Across environments: IQM of normalized scores (0 = reference min, 100 = reference max; "
              "95% stratified bootstrap CI)", ""]
    if summary["aggregate"]:
        lines += ["| algorithm | IQM | 95% CI | envs | runs |", "|---|---|---|---|---|"]
    else:
        lines.append("None: no environment has a normalization (see below).")
    for row in summary["aggregate"]:
        lines.append(f"| {row['algo']} | {row['iqm']:.1f} | [{row['low']:.1f}, {row['high']:.1f}] | "
                     f"{row['envs']} | {row['runs']} |")
    lines += ["", "Normalization per environment:"]
    lines += [f"- {env}: {method}" for env, method in summary["methods"].items()]
    kinds = {method.split(" (")[0].split(":")[0] for method in summary["methods"].values()
             if not method.startswith("none")}
    if len(kinds) > 1:
        lines.append("Note: the environments use different normalizations, so the IQM mixes scales; pass "
                     "--normalize with reference returns for every environment to compare like with like.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Published numbers


# Student-t 0.975 quantiles for n - 1 = 1..30 degrees of freedom (beyond: the normal 1.96).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_interval(values):
    """(mean, half-width) of the Student-t 95% confidence interval of the mean of values (half-width 0 for one)."""
    values = np.asarray(values, np.float64)
    n = len(values)
    if n < 2:
        return float(values.mean()), 0.0
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    return float(values.mean()), float(t * values.std(ddof=1) / math.sqrt(n))


def find_published(roots):
    """The published.json in a root or in a root's parent folder (the results store), or None."""
    for root in roots:
        for folder in (root, os.path.dirname(os.path.abspath(root))):
            path = os.path.join(folder, "published.json")
            if os.path.isfile(path):
                return path
    return None


def load_published(path):
    """The numbers of a published.json, each with its source's fields under "source" (a dict)."""
    try:
        with open(path) as f:
            raw = json.load(f)
        sources, numbers = raw["sources"], []
        for entry in raw["numbers"]:
            number = {key: entry[key] for key in ("algo", "env", "step", "mean", "interval")}
            number["source"] = dict(sources[entry["source"]], name=entry["source"])
            kind = number["source"]["score"]["kind"]
            if kind not in ("at_step", "final_window", "last_episodes"):
                raise ValueError(f"unknown score kind {kind!r}")
            if kind == "final_window" and not number["source"]["score"]["steps"] > 0:
                raise ValueError("final_window needs steps > 0")
            if kind == "last_episodes" and not number["source"]["score"]["episodes"] > 0:
                raise ValueError("last_episodes needs episodes > 0")
            for key in ("step", "mean", "interval"):
                if not isinstance(number[key], (int, float)) or not math.isfinite(number[key]):
                    raise ValueError(f"{key} of {entry} is not a number")
            numbers.append(number)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"cannot read the published numbers {path} ({type(e).__name__}: {e})")
    return numbers


def published_score(run, number):
    """A run's score as the number's source computes its own, or None when the run does not reach it."""
    score = number["source"]["score"]
    if score["kind"] == "at_step":
        at = np.flatnonzero(run.steps == number["step"])
        return float(run.returns[at[0]]) if len(at) else None
    if run.last_step < number["step"]:
        return None
    if score["kind"] == "last_episodes":
        try:
            _, returns, _ = read_episodes(run.path)
        except (OSError, ValueError) as e:
            raise UsageError(f"{number['source']['name']} scores training episodes, and {run.path} has none to "
                             f"read ({e})")
        return float(returns[-score["episodes"]:].mean()) if len(returns) else None
    return float(run.returns[run.steps >= run.last_step - score["steps"]].mean())


def compare_published(runs, numbers):
    """One row per published number that has runs: ours (per seed, mean and t interval) beside it."""
    rows = []
    for number in numbers:
        group = [r for r in runs if r.algo == number["algo"] and r.env == number["env"]]
        scores = [s for s in (published_score(r, number) for r in group) if s is not None]
        if not group:
            continue
        mean, half = t_interval(scores) if scores else (float("nan"), float("nan"))
        low, high = number["mean"] - number["interval"], number["mean"] + number["interval"]
        where = "-" if not scores else "inside" if low <= mean <= high else "above" if mean > high else "below"
        rows.append({"number": number, "scores": scores, "mean": mean, "half": half, "where": where,
                     "missing": len(group) - len(scores)})
    return rows


def format_published(rows) -> str:
    if not rows:
        return ""
    lines = ["## Beside the published numbers (our score computed as each source computes its own; mean over "
             "seeds, Student-t 95% CI)", "",
             "| env | algorithm | step | ours | seeds | published | source | ours vs published |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        number, source = row["number"], row["number"]["source"]
        ours = (f"{row['mean']:.0f} +- {row['half']:.0f}" if len(row["scores"]) > 1 else
                f"{row['mean']:.0f}" if row["scores"] else "not reached")
        seeds = ", ".join(f"{s:.0f}" for s in row["scores"]) or "-"
        seeds += f" ({row['missing']} not reached)" if row["missing"] else ""
        lines.append(f"| {number['env']} | {number['algo']} | {number['step']:,} | {ours} | {seeds} | "
                     f"{number['mean']:.0f} +- {number['interval']:.0f} ({source['interval']}, "
                     f"{source['seeds']} seeds) | {source['name']} | {row['where']} |")
    lines += ["", "Sources:"]
    for name, source in {r["number"]["source"]["name"]: r["number"]["source"] for r in rows}.items():
        lines.append(f"- {name}: {source['citation']}. {source['protocol']}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Figure


def plot(runs, out: str, reps: int, rng: np.random.Generator, title=None, published=(), formats=("png", "pdf")):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({r.env for r in runs})
    labels = sorted({r.label for r in runs})
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    ncols = min(3, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.8 * nrows), squeeze=False)
    for ax, env in zip(axes.flat, envs):
        env_runs = [r for r in runs if r.env == env]
        use_normalized = all(r.normalized is not None for r in env_runs)
        for label in labels:
            group = [r for r in env_runs if r.label == label]
            if not group:
                continue
            values_of = (lambda r: r.normalized) if use_normalized else (lambda r: r.returns)
            grid, mean, low, high, _ = curve(group, values_of, reps, rng)
            partial = sum(not r.finished for r in group)
            scored = [n for n in published if n["algo"] == label and n["env"] == env and not use_normalized]
            trained = any(n["source"]["score"]["kind"] == "last_episodes" for n in scored)
            name = f"{label} ({'evaluations, ' if trained else ''}{len(group)} seed{'s' if len(group) != 1 else ''}" + (
                f", {partial} partial)" if partial else ")")
            ax.plot(grid, mean, color=colors[label], label=name, linewidth=1.5)
            ax.fill_between(grid, low, high, color=colors[label], alpha=0.2, linewidth=0)
            for number in scored:
                source = number["source"]
                if source["score"]["kind"] == "last_episodes":  # the source scores training episodes: draw ours
                    try:
                        n = source["score"]["episodes"]
                        ax.plot(*training_curve(group, n), color=colors[label], linestyle="--", linewidth=1.2,
                                label=f"{label}: training episodes (mean of the last {n})")
                    except (OSError, ValueError) as e:
                        raise UsageError(f"{source['name']} scores training episodes, and a run of {label} on "
                                         f"{env} has none to read ({e})")
                ax.errorbar([number["step"]], [number["mean"]], yerr=[number["interval"]], fmt="o",
                            color=colors[label], markeredgecolor="black", ecolor="black", capsize=4, zorder=3,
                            label=f"{label}: {source['name']} ({source['interval']}, {source['seeds']} seeds)")
        ax.set_title(env)
        ax.set_xlabel("gradient steps" if all(r.offline for r in env_runs) else "environment steps")
        trains = any(n["env"] == env and n["algo"] in {r.label for r in env_runs} and not use_normalized
                     and n["source"]["score"]["kind"] == "last_episodes" for n in published)
        ax.set_ylabel("normalized score" if use_normalized else "return" if trains else "evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes.flat[len(envs):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    paths = []
    for ext in formats:
        path = f"{out}.{ext}"
        fig.savefig(path, dpi=150 if ext == "png" else None, metadata=None if ext == "png" else {"CreationDate": None})
        paths.append(path)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="plot.py", description="Learning curves (PNG, PDF) and final-performance tables from run folders.")
    parser.add_argument("roots", nargs="+", help="folders holding run folders, searched recursively")
    parser.add_argument("--out", default=None,
                        help="figure path without extension (default: <first root>/curves -> curves.png, curves.pdf)")
    parser.add_argument("--last", type=int, default=10, help="evaluations averaged for a seed's final score (10)")
    parser.add_argument("--reps", type=int, default=5000, help="bootstrap resamples (5000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (0): same input, same output")
    parser.add_argument("--normalize", default=None, metavar="d4rl|FILE.json",
                        help="reference returns for the normalized scores: d4rl (D4RL's random and expert returns "
                             "of halfcheetah, hopper, walker2d, ant) or a JSON file {env: [min, max]}")
    parser.add_argument("--group-by", nargs="*", default=[], metavar="KEY",
                        help="config keys added to the algorithm label, e.g. --group-by lap")
    parser.add_argument("--algos", nargs="*", default=None, help="only these algorithms (config algo)")
    parser.add_argument("--envs", nargs="*", default=None, help="only these environments (config env)")
    parser.add_argument("--table", default=None, help="also write the markdown tables to this file")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument("--published", default=None, metavar="FILE.json",
                        help="published numbers to set beside ours (default: published.json in a root or its parent)")
    parser.add_argument("--formats", nargs="+", default=None, choices=["png", "pdf", "svg"],
                        help="figure formats (default png pdf; png for a results-store suite)")
    parser.add_argument("--no-figure", action="store_true", help="print the tables only")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.last < 1 or args.reps < 1:
        raise UsageError("--last and --reps must be positive")
    warn = lambda message: print(f"plot.py: {message}", file=sys.stderr)  # noqa: E731
    runs = find_runs(args.roots, tuple(args.group_by), warn)
    if args.algos is not None:
        runs = [r for r in runs if r.algo in args.algos]
    if args.envs is not None:
        runs = [r for r in runs if r.env.split(" (")[0] in args.envs or r.env in args.envs]
    if not runs:
        raise UsageError(f"no runs left after --algos/--envs under {', '.join(args.roots)}")
    load_reference(args.normalize)  # a bad file fails before any work
    published_path = args.published or find_published(args.roots)
    published = load_published(published_path) if published_path else []
    suite = len(args.roots) == 1 and os.path.isfile(os.path.join(args.roots[0], "suite.json"))
    rng = np.random.default_rng(args.seed)
    text = format_tables(summarize(runs, args.last, args.reps, rng, args.normalize), args.last)
    comparison = format_published(compare_published(runs, published))
    if comparison:
        text = comparison + "\n" + text
    say(text.rstrip("\n"))
    table = args.table or (os.path.join(args.roots[0], "table.md") if suite else None)
    if table:
        with open(table, "w") as f:
            f.write(text)
    if not args.no_figure:
        out = args.out or os.path.join(args.roots[0], "curves")
        formats = args.formats or (["png"] if suite else ["png", "pdf"])
        paths = plot(runs, out, args.reps, np.random.default_rng(args.seed + 1), args.title, published, formats)
        say(f"\nfigures: {', '.join(paths)}" + (f"; tables: {table}" if table else ""))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UsageError as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        sys.exit(2)
