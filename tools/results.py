"""The results store (benchmarks/results/): copy finished runs into it, and check it.

    python tools/results.py collect ~/campaign/runs/ppo-1m benchmarks/results/ppo-1m
    python tools/results.py check                      # every suite under benchmarks/results
    python tools/results.py check benchmarks/results/td7-300k --complete
    python tools/results.py readme [--write]          # the README's results section, from the store
    python tools/results.py verify benchmarks/results/td7-300k/td7/HalfCheetah-v4/seed0 [--until 30000]

A suite is a folder <store>/<suite>/ holding suite.json,
    {"sweeps": ["python tools/sweep.py --algos ... -- --total-timesteps 300000", ...],
     "torch_threads": 1, "commits": ["<git commit of the project>", ...]},
the sweep commands that made its runs (their grid: algorithms x environments x seeds, and the arguments after
`--` that every run got), the torch threads of each run, and the commits the runs were made with. For each run
of those sweeps that finished, <suite>/<algo>/<env>/seed<k>/ holds the run's config.json and evaluations.csv
exactly as the script wrote them, its training episodes as episodes.csv (step,return,length: the step at which
each episode of the exploring policy ended, its return and length, read from the run's TensorBoard log, the score
CleanRL reports), and nothing else. Beside them, the suite may hold what tools/plot.py makes of it: curves.png and
table.md.

collect copies each finished run folder found under a sweep's root (recursively) into the suite, after checking
it as below; an unfinished run is left out, and a run already in the store is never overwritten (the same files:
nothing to do; other files: said, and left as they are; the same config.json and evaluations.csv without an
episodes.csv, as stored before the store kept one: its episodes.csv is added).

check verifies, for every suite: suite.json and its sweep commands parse; nothing but the files above is in the
suite; each run belongs to the grid of a sweep; its config matches that sweep's command: the environment and
seed of its cell, the arguments after `--`, every other hyperparameter and harness flag at the script's
default (but the run folder), the suite's thread count and one of its commits, from a clean work tree (no
git_dirty); its evaluations.csv has the
scripts' header, exactly the evaluation steps of the schedule from step 0 to the end of the run, eval_episodes
returns in each row, and the mean and standard deviation of those returns in its columns; its episodes.csv
ends no episode after the run's end, and with one environment each episode ends exactly its length after the one
before it (no episode lost or counted twice). --complete also
requires every run of every sweep to be there. Exit status 1 when a check fails, 2 on bad input.

verify runs a stored run again, from a clean clone of its commit with its suite's command (--source DIR: from
that checkout instead, commit unchecked), until its evaluation at --until, and compares each evaluation as it
comes (step, mean, standard deviation and every return; not the wall time) with the stored one, then the
training episodes that ended by then (step, return and length): the scripts are
deterministic on the CPU, so a run's evaluations are reproducible on a machine like the one that made them (the
same torch and library versions; config.json records them). Exit status 1 at the first difference.

readme prints the README's results section, made from the store alone: for each suite (in its "order"), its
"title", how many of its runs are in, its figure and the table of our scores beside the published numbers (the
first table of its table.md); --write puts it into README.md between the two marker lines. tests/test_results.py
fails when the README's section is not what this makes.
"""

import argparse
import csv
import filecmp
import importlib.util
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORE = os.path.join(ROOT, "benchmarks", "results")
sys.path[:0] = [ROOT, os.path.join(ROOT, "tools")]  # the scripts (and their lap_buffer), and sweep.py
import plot  # noqa: E402  (read_episodes: a run's training episodes)
import sweep  # noqa: E402
from sweep import report as say  # noqa: E402  (a line of output; a reader that went away costs nothing)

RUN_FILES = ("config.json", "evaluations.csv", "episodes.csv")
COPIED = ("config.json", "evaluations.csv")  # as the script wrote them; episodes.csv is read from its TensorBoard log
SUITE_FILES = ("suite.json", "curves.png", "table.md")
HEADER = ["step", "wall_seconds", "mean_return", "std_return", "returns"]


class UsageError(Exception):
    """Bad input: one line on stderr, exit status 2."""


# ---------------------------------------------------------------------------------------------
# A suite and what its runs must be


class Suite:
    def __init__(self, path: str):
        self.path, self.name = path, os.path.basename(os.path.normpath(path))
        try:
            with open(os.path.join(path, "suite.json")) as f:
                spec = json.load(f)
            self.commands, self.threads, self.commits = spec["sweeps"], int(spec["torch_threads"]), spec["commits"]
            self.title, self.order = spec.get("title", self.name), spec.get("order", 0)
            self.cells = {}  # (algo, env, seed) -> the arguments after `--` of its sweep
            for command in self.commands:
                words = shlex.split(command)
                if words[:2] != ["python", "tools/sweep.py"]:
                    raise ValueError(f"a sweep command starts with python tools/sweep.py: {command}")
                args, passthrough = sweep.parse_args(words[2:])
                for algo in args.algos:
                    for env in args.envs:
                        for seed in args.seeds:
                            self.cells[(algo, env, seed)] = passthrough
        except (OSError, ValueError, KeyError, TypeError, SystemExit, sweep.UsageError) as e:
            raise UsageError(f"{path}: cannot read suite.json ({type(e).__name__}: {e})")

    def run_dir(self, algo: str, env: str, seed: int) -> str:
        return os.path.join(self.path, algo, env, f"seed{seed}")


_scripts = {}


def script(algo: str):
    """The algorithm's script as a module (for its Args and RunFlags defaults)."""
    if algo not in _scripts:
        spec = importlib.util.spec_from_file_location(f"_results_{algo}", os.path.join(ROOT, f"{algo}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
        _scripts[algo] = module
    return _scripts[algo]


def flag_values(passthrough: list) -> dict:
    """{field name: value as text, or True/False for a bare --flag / --no-flag} of tyro-style arguments."""
    values, i = {}, 0
    while i < len(passthrough):
        word = passthrough[i]
        if not word.startswith("--"):
            raise ValueError(f"unexpected argument {word!r}")
        name, sep, value = word[2:].partition("=")
        if sep:
            values[name.replace("-", "_")] = value
        elif i + 1 < len(passthrough) and not passthrough[i + 1].startswith("--"):
            values[name.replace("-", "_")] = passthrough[i + 1]
            i += 1
        elif name.startswith("no-"):
            values[name[3:].replace("-", "_")] = False
        else:
            values[name.replace("-", "_")] = True
        i += 1
    return values


def same(recorded, wanted) -> bool:
    """A config value against a command-line value (text) or a default."""
    if isinstance(wanted, str) and not isinstance(recorded, str):
        if isinstance(recorded, bool):
            return False
        try:
            return float(recorded) == float(wanted)
        except (TypeError, ValueError):
            return False
    return recorded == wanted


def config_problems(suite: Suite, algo: str, env: str, seed: int, config: dict) -> list:
    """What is wrong with a run's config for its cell of the suite (empty: it matches)."""
    if (algo, env, seed) not in suite.cells:
        return [f"{algo} {env} seed{seed} is not in the grid of any sweep of {suite.name}"]
    problems = []
    for key, wanted in (("algo", algo), ("env", env), ("seed", seed), ("torch_threads", suite.threads)):
        if config.get(key) != wanted:
            problems.append(f"{key} is {config.get(key)!r}, not {wanted!r}")
    if config.get("git_commit") not in suite.commits:
        problems.append(f"git_commit {config.get('git_commit')!r} is not one of the suite's commits")
    if config.get("git_dirty"):
        problems.append("git_dirty: it ran from a work tree whose tracked files differed from its commit")
    module = script(algo)
    defaults = asdict(module.Args())
    run_defaults = defaults.pop("run")
    given = flag_values(suite.cells[(algo, env, seed)])
    expected = dict(defaults, env=env, seed=seed)
    run_expected = dict(run_defaults, torch_threads=suite.threads)
    for name, value in given.items():
        if name in expected:
            expected[name] = value
        elif name in run_expected:
            run_expected[name] = value
        else:
            problems.append(f"the sweep passes --{name.replace('_', '-')}, which {algo}.py does not have")
    for name, wanted in expected.items():
        if name not in config or not same(config[name], wanted):
            problems.append(f"{name} is {config.get(name)!r}, the sweep's command gives {wanted!r}")
    recorded_run = config.get("run") if isinstance(config.get("run"), dict) else {}
    for name, wanted in run_expected.items():
        if name != "run_dir" and not same(recorded_run.get(name), wanted):
            problems.append(f"run.{name} is {recorded_run.get(name)!r}, the sweep's command gives {wanted!r}")
    return problems


def schedule(config: dict) -> list:
    """The evaluation steps of a whole run, as the harness makes them: step 0, then after each step (PPO: each
    rollout of num_envs * num_steps) that crosses a multiple of eval_freq, and at the end."""
    total, freq = int(config["total_timesteps"]), int(config["eval_freq"])
    size = int(config["num_envs"]) * int(config["num_steps"]) if "num_steps" in config else 1
    count = -(-total // size)
    steps = [0]
    for m in range(1, count * size // freq + 1):  # the first step that reaches m * eval_freq
        steps.append(-(-m * freq // size) * size)
    if steps[-1] != count * size:
        steps.append(count * size)
    return sorted(set(steps))


def evaluation_problems(path: str, config: dict) -> list:
    """What is wrong with a run's evaluations.csv (empty: it is whole and consistent)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        return [f"cannot read it ({e})"]
    if not rows or rows[0] != HEADER:
        return [f"its header is not {','.join(HEADER)}"]
    problems, steps = [], []
    for row in rows[1:]:
        try:
            step, mean, std = int(row[0]), float(row[2]), float(row[3])
            returns = [float(x) for x in row[4].split()]
        except (ValueError, IndexError):
            return [f"row {row} is malformed"]
        steps.append(step)
        if len(returns) != config.get("eval_episodes"):
            problems.append(f"step {step}: {len(returns)} returns, not eval_episodes {config.get('eval_episodes')}")
        elif returns:
            m = sum(returns) / len(returns)
            s = math.sqrt(sum((r - m) ** 2 for r in returns) / len(returns))
            if abs(m - mean) > 2e-3 or abs(s - std) > 2e-3:
                problems.append(f"step {step}: mean/std {mean}/{std} are not those of its returns ({m:.3f}/{s:.3f})")
    wanted = schedule(config)
    if steps != wanted:
        missing = sorted(set(wanted) - set(steps))[:3]
        extra = sorted(set(steps) - set(wanted))[:3]
        problems.append(f"its steps are not the schedule's {len(wanted)} from 0 to {wanted[-1]} ({len(steps)} rows;"
                        f" missing {missing}, unexpected {extra})")
    return problems


def episodes_text(run_dir: str) -> str:
    """The episodes.csv of a run folder, from its TensorBoard log (ValueError when it has none)."""
    steps, returns, lengths = plot.read_episodes(run_dir)
    rows = zip(steps.tolist(), returns.tolist(), lengths.tolist())
    return "".join(["step,return,length\n"] + [f"{s},{r!r},{n}\n" for s, r, n in rows])


def episode_problems(path: str, config: dict) -> list:
    """What is wrong with a run's episodes.csv (empty: it is consistent with the run)."""
    try:
        steps, _, lengths = plot.read_episodes(os.path.dirname(path))
    except (OSError, ValueError) as e:
        return [f"cannot read it ({e})"]
    end = schedule(config)[-1]
    if len(steps) and (steps[0] <= 0 or steps[-1] > end or any(b < a for a, b in zip(steps, steps[1:]))):
        return [f"its steps are not in order within 1..{end}"]
    if int(config.get("num_envs", 1)) == 1 and list(steps) != list(lengths.cumsum()):
        first = next(i for i, (s, c) in enumerate(zip(steps, lengths.cumsum())) if s != c)
        return [f"episode {first + 1} ends at step {steps[first]}, not at the sum of the lengths so far "
                f"({lengths[:first + 1].sum()}): an episode is missing or counted twice"]
    return []


def check(suite: Suite, complete: bool = False) -> list:
    """Every problem of a suite, as lines."""
    problems = []
    for name in sorted(os.listdir(suite.path)):
        if name not in SUITE_FILES and not (os.path.isdir(os.path.join(suite.path, name))
                                            and name in {algo for algo, _, _ in suite.cells}):
            problems.append(f"{suite.name}/{name} does not belong in a suite")
    found = set()
    for algo in sorted({algo for algo, _, _ in suite.cells}):
        for dirpath, dirnames, filenames in os.walk(os.path.join(suite.path, algo)):
            dirnames.sort()
            rel = os.path.relpath(dirpath, suite.path)
            parts = rel.split(os.sep)
            if len(parts) < 3:
                if filenames:
                    problems.append(f"{suite.name}/{rel} holds files: {', '.join(sorted(filenames))}")
                continue
            dirnames[:] = []
            if len(parts) > 3 or not parts[2].startswith("seed") or not parts[2][4:].isdigit():
                problems.append(f"{suite.name}/{rel} is not <algo>/<env>/seed<k>")
                continue
            cell = (parts[0], parts[1], int(parts[2][4:]))
            found.add(cell)
            if sorted(filenames) != sorted(RUN_FILES):
                problems.append(f"{suite.name}/{rel} holds {sorted(filenames)}, not exactly {list(RUN_FILES)}")
                continue
            try:
                with open(os.path.join(dirpath, "config.json")) as f:
                    config = json.load(f)
            except (OSError, ValueError) as e:
                problems.append(f"{suite.name}/{rel}/config.json: {e}")
                continue
            problems += [f"{suite.name}/{rel}/config.json: {p}" for p in config_problems(suite, *cell, config)]
            problems += [f"{suite.name}/{rel}/evaluations.csv: {p}"
                         for p in evaluation_problems(os.path.join(dirpath, "evaluations.csv"), config)]
            problems += [f"{suite.name}/{rel}/episodes.csv: {p}"
                         for p in episode_problems(os.path.join(dirpath, "episodes.csv"), config)]
    if complete:
        for algo, env, seed in sorted(set(suite.cells) - found):
            problems.append(f"{suite.name}: {algo} {env} seed{seed} is missing")
    return problems


# ---------------------------------------------------------------------------------------------
# collect


def collect(source: str, suite: Suite, say=say) -> int:
    """Copies the finished runs under source into the suite; the number copied."""
    copied = 0
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        if "config.json" not in filenames:
            continue
        dirnames[:] = []
        finished, last = sweep.run_folder_state(dirpath)
        if not finished:
            say(f"not finished (last evaluation at step {last}): {dirpath}")
            continue
        with open(os.path.join(dirpath, "config.json")) as f:
            config = json.load(f)
        cell = (str(config.get("algo")), str(config.get("env")), config.get("seed"))
        problems = config_problems(suite, *cell, config) + evaluation_problems(
            os.path.join(dirpath, "evaluations.csv"), config)
        if problems:
            say(f"left out {dirpath}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
            continue
        try:
            episodes = episodes_text(dirpath)
        except (OSError, ValueError) as e:
            say(f"left out {dirpath}: no training episodes to read ({e})")
            continue
        dest = suite.run_dir(*cell)
        if os.path.isdir(dest):
            same = all(os.path.exists(os.path.join(dest, n)) and
                       filecmp.cmp(os.path.join(dirpath, n), os.path.join(dest, n), shallow=False) for n in COPIED)
            if same and sorted(os.listdir(dest)) == sorted(COPIED):  # stored before the store kept episodes.csv
                with open(os.path.join(dest, "episodes.csv.partial"), "w") as f:
                    f.write(episodes)
                os.replace(os.path.join(dest, "episodes.csv.partial"), os.path.join(dest, "episodes.csv"))
                say(f"added the training episodes of {cell[0]} {cell[1]} seed{cell[2]}: {dirpath}")
                continue
            if same and sorted(os.listdir(dest)) == sorted(RUN_FILES):
                with open(os.path.join(dest, "episodes.csv")) as f:
                    if f.read() == episodes:
                        continue
            say(f"left out {dirpath}: {dest} already holds another run of {cell[0]} {cell[1]} seed{cell[2]}")
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        partial = dest + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        for name in COPIED:
            shutil.copyfile(os.path.join(dirpath, name), os.path.join(partial, name))
        with open(os.path.join(partial, "episodes.csv"), "w") as f:
            f.write(episodes)
        os.replace(partial, dest)
        say(f"copied {cell[0]} {cell[1]} seed{cell[2]}: {dirpath}")
        copied += 1
    return copied


# ---------------------------------------------------------------------------------------------
# verify


def stored_run(path: str):
    """(suite, (algo, env, seed), config) of a run folder of the store, <suite>/<algo>/<env>/seed<k>."""
    path = os.path.abspath(path)
    seed_dir, env_dir, algo_dir = path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))
    name = os.path.basename(seed_dir)
    if not (name.startswith("seed") and name[4:].isdigit() and os.path.isfile(os.path.join(path, "config.json"))):
        raise UsageError(f"{path} is not a run of the store (<suite>/<algo>/<env>/seed<k> with a config.json)")
    suite = Suite(os.path.dirname(algo_dir))
    cell = (os.path.basename(algo_dir), os.path.basename(env_dir), int(name[4:]))
    if cell not in suite.cells:
        raise UsageError(f"{cell[0]} {cell[1]} seed{cell[2]} is not in the grid of any sweep of {suite.name}")
    with open(os.path.join(path, "config.json")) as f:
        return suite, cell, json.load(f)


def read_rows(path: str) -> list:
    """The rows of an evaluations.csv as (step, mean, std, returns), the columns a rerun must reproduce."""
    try:
        with open(path, newline="") as f:
            return [(int(r[0]), r[2], r[3], r[4]) for r in list(csv.reader(f))[1:] if len(r) == len(HEADER)]
    except (OSError, ValueError):
        return []


def clean_clone(commit: str, dest: str):
    """A clone of this repository at the commit (a run's git_commit)."""
    for command in (["git", "clone", "-q", "--no-checkout", ROOT, dest], ["git", "-C", dest, "checkout", "-q", commit]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise UsageError(f"cannot check out commit {commit} of {ROOT}: {result.stderr.strip() or result.stdout}")


def interrupt(signum, frame):
    raise KeyboardInterrupt


def verify(path: str, until: int, source: str = None, say=say) -> bool:
    """Runs a stored run again until its evaluation at step `until`; whether every evaluation up to there is the
    stored one."""
    suite, (algo, env, seed), config = stored_run(path)
    stored = [row for row in read_rows(os.path.join(path, "evaluations.csv")) if row[0] <= until]
    if not stored:
        raise UsageError(f"{path}/evaluations.csv has no evaluation at or before step {until}")
    with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        commit = config.get("git_commit")
        if source is None:
            if not commit:
                raise UsageError(f"{path}/config.json names no git_commit: pass --source")
            source = os.path.join(tmp, "code")
            clean_clone(commit, source)
        elif not os.path.isfile(os.path.join(source, f"{algo}.py")):
            raise UsageError(f"{source} holds no {algo}.py")
        command = [sys.executable, f"{algo}.py", "--env", env, "--seed", str(seed), "--run-dir",
                   os.path.join(tmp, "run"), *suite.cells[(algo, env, seed)]]
        say(f"verify: {algo} {env} seed{seed} " + (f"at {commit[:7]}" if source.startswith(tmp) else
            f"from {source} (its commit unchecked)") + f", until step {stored[-1][0]}: {shlex.join(command[1:])}")
        with open(os.path.join(tmp, "log.txt"), "w") as log:
            child = subprocess.Popen(command, cwd=source, stdout=log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        compared = 0
        try:
            while compared < len(stored):
                done = child.poll() is not None
                found = [os.path.join(d, "evaluations.csv") for d, _, files in os.walk(os.path.join(tmp, "run"))
                         if "evaluations.csv" in files]
                rows = read_rows(found[0]) if found else []
                for row in rows[compared:len(stored)]:
                    want = stored[compared]
                    if row != want:
                        say(f"  step {want[0]}: DIFFERENT: stored {want[1]} +- {want[2]} ({want[3]}), "
                            f"rerun step {row[0]}: {row[1]} +- {row[2]} ({row[3]})")
                        return False
                    say(f"  step {row[0]}: the same ({row[1]} +- {row[2]}, {len(row[3].split())} returns)")
                    compared += 1
                if done and compared < len(stored):
                    with open(os.path.join(tmp, "log.txt")) as f:
                        tail = f.read().strip().splitlines()[-1:] or ["no output"]
                    say(f"  the rerun stopped (exit status {child.returncode}) after {compared} evaluations: {tail[0]}")
                    return False
                time.sleep(0.5 if not done else 0)
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # the scripts stop within one gradient step
                try:
                    child.wait(timeout=300)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        return same_episodes(path, os.path.join(tmp, "run"), stored[-1][0], say)


def same_episodes(path: str, rerun: str, until: int, say=say) -> bool:
    """Whether the rerun's training episodes (its TensorBoard log, closed) that ended by step `until` are the
    stored run's (episodes.csv), step, return and length each."""
    if not os.path.isfile(os.path.join(path, "episodes.csv")):
        say("  training episodes not compared: the stored run has no episodes.csv")
        return True
    folders = [d for d, _, files in os.walk(rerun) if "config.json" in files]
    try:
        stored, again = plot.read_episodes(path), plot.read_episodes(folders[0]) if folders else None
    except (OSError, ValueError) as e:
        say(f"  training episodes: cannot read them ({e})")
        return False
    stored, again = ([row for row in zip(*(a.tolist() for a in episodes)) if row[0] <= until]
                     for episodes in (stored, again))
    if stored != again:
        i = next(i for i in range(len(stored) + 1) if i == len(stored) or i == len(again) or stored[i] != again[i])
        say(f"  training episodes through step {until}: DIFFERENT at episode {i + 1}: stored "
            f"{stored[i] if i < len(stored) else 'none'}, rerun {again[i] if i < len(again) else 'none'}")
        return False
    say(f"  training episodes through step {until}: identical ({len(stored)} episodes: step, return, length)")
    return True


README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- results store: begin (python tools/results.py readme --write) -->", "<!-- results store: end -->"


def readme_section(store: str = STORE) -> str:
    """The README's results section: each suite's title, runs in, figure and comparison table; then the sources."""
    lines, sources = [], []
    suites = sorted((Suite(path) for path in suites_under(store)), key=lambda suite: (suite.order, suite.name))
    for suite in suites:
        runs = sum(os.path.isdir(suite.run_dir(*cell)) for cell in suite.cells)
        rel = os.path.relpath(suite.path, ROOT)
        lines += [f"**{suite.title}** (`{rel}`): {runs} of {len(suite.cells)} runs in"
                  + (" so far." if runs < len(suite.cells) else ".")]
        if runs:
            with open(os.path.join(suite.path, "table.md")) as f:
                table = f.read().split("\n\n## ")[0].split("\n\n")
            rows, notes = table[1], table[2] if len(table) > 2 else ""
            lines += ["", f"![{suite.name}]({rel}/curves.png)", "", rows]
            sources += [line for line in notes.splitlines()[1:] if line not in sources]
        lines.append("")
    if sources:
        lines += ["Ours: the mean over seeds with a Student-t 95% confidence interval, each seed's score computed as "
                  "the source computes its own. Where ours lies outside the published interval, "
                  "[the store's README](benchmarks/results/README.md#reading-the-numbers-beside-the-published-ones) "
                  "says why we think it does. Sources:"] + sources
    return "\n".join(lines).strip() + "\n"


def write_readme(section: str, path: str = README):
    with open(path) as f:
        text = f.read()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise UsageError(f"{path} needs one line {BEGIN} and one line {END}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n" + section + END + tail)


def readme_block(path: str = README) -> str:
    """The README's current results section (between the markers)."""
    with open(path) as f:
        text = f.read()
    return text.split(BEGIN, 1)[1].split(END, 1)[0][1:] if BEGIN in text and END in text else ""


def suites_under(store: str) -> list:
    return [os.path.join(store, name) for name in sorted(os.listdir(store))
            if os.path.isfile(os.path.join(store, name, "suite.json"))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="results.py", description="Copy finished runs into the results store "
                                     "(collect), check it (check), rerun a stored run (verify).")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="copy the finished runs under a sweep root into a suite")
    c.add_argument("source", help="a sweep's --root (or any folder holding run folders)")
    c.add_argument("suite", help="the suite's folder, holding suite.json")
    k = sub.add_parser("check", help="check suites (default: every suite of benchmarks/results)")
    k.add_argument("suites", nargs="*", help="suite folders")
    k.add_argument("--complete", action="store_true", help="also require every run of every sweep")
    r = sub.add_parser("readme", help="print the README's results section, made from the store")
    r.add_argument("--write", action="store_true", help="put it into README.md between its marker lines")
    v = sub.add_parser("verify", help="run a stored run again and compare its evaluations with the stored ones")
    v.add_argument("run", help="a run of the store: <suite>/<algo>/<env>/seed<k>")
    v.add_argument("--until", type=int, default=30000, metavar="STEP",
                   help="compare the evaluations up to this step (default: 30000, the first 5000 learning steps of "
                        "an off-policy run)")
    v.add_argument("--source", metavar="DIR", help="run this checkout's script instead of a clone of the run's commit")
    args = parser.parse_args(argv)
    if args.command == "verify":
        signal.signal(signal.SIGTERM, interrupt)  # a stop request: the rerun is stopped and its folder removed
        if args.until < 0:
            raise UsageError(f"--until must be a step >= 0, not {args.until}")
        same_run = verify(args.run, args.until, args.source)
        say("verify: " + ("every evaluation compared is the stored one" if same_run else "the rerun differs"))
        return 0 if same_run else 1
    if args.command == "readme":
        section = readme_section()
        if args.write:
            write_readme(section)
        else:
            say(section.rstrip("\n"))
        return 0
    if args.command == "collect":
        if not os.path.isdir(args.source):
            raise UsageError(f"{args.source} is not a directory")
        count = collect(args.source, Suite(args.suite), say)
        say(f"{count} run(s) copied into {args.suite}")
        return 0
    paths = args.suites or suites_under(STORE)
    if not paths:
        raise UsageError("no suites (folders with suite.json) to check")
    failed = False
    for path in paths:
        suite = Suite(path)
        problems = check(suite, args.complete)
        runs = sum(os.path.isdir(suite.run_dir(*cell)) for cell in suite.cells)
        say(f"{suite.name}: {runs} of {len(suite.cells)} runs, " + ("ok" if not problems else
                                                                       f"{len(problems)} problem(s)"))
        for problem in problems:
            say(f"  {problem}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UsageError as e:
        print(f"results.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # verify's rerun gets the same Ctrl-C and stops within one gradient step
        print("results.py: interrupted", file=sys.stderr)
        sys.exit(130)
