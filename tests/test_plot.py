"""tools/plot.py: run discovery, final-score table, bootstrap CIs, IQM, figures and bad input."""

import importlib.util
import json
import os
import re
import sys

import numpy as np
import pytest

from conftest import ROOT, one_error_line, run_script

sys.path.insert(0, os.path.join(ROOT, "tools"))
import plot  # noqa: E402


def write_run(root, algo, env, seed, steps, returns, total, normalized=None, name=None):
    """A run folder as the scripts write it: config.json and evaluations.csv."""
    path = root / (name or f"{env}__{algo}__{seed}__{1700000000 + seed}")
    path.mkdir(parents=True)
    config = {"algo": algo, "env": env, "seed": seed, "total_timesteps": total, "eval_freq": 100}
    (path / "config.json").write_text(json.dumps(config))
    header = "step,wall_seconds,mean_return,std_return,returns"
    header += ",normalized_score" if normalized is not None else ""
    lines = [header]
    for i, (step, ret) in enumerate(zip(steps, returns)):
        row = f"{step},{i:.1f},{ret:.3f},0.000,{ret:.3f} {ret:.3f}"
        if normalized is not None:
            row += f",{normalized[i]:.3f}"
        lines.append(row)
    (path / "evaluations.csv").write_text("\n".join(lines) + "\n")
    return path


def curve_of(seed, offset, n=15):
    """Deterministic, distinct returns per seed: offset + 10 * step index + seed-dependent noise."""
    rng = np.random.default_rng(1000 + seed)
    return np.round(offset + 10.0 * np.arange(n) + rng.normal(0, 5, n), 3)


@pytest.fixture
def runs_root(tmp_path):
    """2 algorithms x 2 environments x 3 seeds, 15 evaluations each (step 0..1400), one partial run
    (td3 on Hopper seed 2 stopped after 12 evaluations), nested folders as a sweep makes them."""
    root = tmp_path / "runs"
    steps = np.arange(15) * 100
    data = {}
    for algo, offset in [("td3", 0.0), ("sac", 50.0)]:
        for env, env_offset in [("Hopper-v4", 0.0), ("Pendulum-v1", -500.0)]:
            for seed in range(3):
                returns = curve_of(seed, offset + env_offset)
                n = 12 if (algo, env, seed) == ("td3", "Hopper-v4", 2) else 15
                write_run(root / algo / env / f"seed{seed}", algo, env, seed, steps[:n], returns[:n], total=1400)
                data[(algo, env, seed)] = returns[:n]
    (root / "td3" / "not_a_run").mkdir()
    (root / "td3" / "not_a_run" / "notes.txt").write_text("nothing here")
    return root, data


def table_row(text, env, algo):
    [line] = [l for l in text.splitlines() if l.startswith(f"| {env} | {algo} |")]
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_matches_a_hand_computation(runs_root, tmp_path):
    pytest.importorskip("matplotlib")
    root, data = runs_root
    result = run_script("tools/plot.py", str(root), "--out", str(tmp_path / "fig" / "curves"), "--reps", "500")
    assert result.returncode == 0, result.stderr
    for (algo, env) in [("td3", "Hopper-v4"), ("sac", "Hopper-v4"), ("td3", "Pendulum-v1"), ("sac", "Pendulum-v1")]:
        per_seed = [np.round(data[(algo, env, s)], 3)[-10:].mean() for s in range(3)]  # last 10 evaluations
        cells = table_row(result.stdout, env, algo)
        assert cells[2] == f"{np.mean(per_seed):.1f}"
        low, high = map(float, re.findall(r"-?\d+\.\d", cells[3]))
        assert low <= float(cells[2]) <= high
        partial = (algo, env) == ("td3", "Hopper-v4")
        assert cells[4] == ("3 (1 partial)" if partial else "3")
        assert cells[5] == ("1100-1400" if partial else "1400")
    # No reference returns: normalized by the first evaluation and the best final mean, and said so.
    assert "first evaluation" in result.stdout and "best final mean (sac" in result.stdout
    for ext in ("png", "pdf"):
        path = tmp_path / "fig" / f"curves.{ext}"
        assert path.is_file() and path.stat().st_size > 1000
    assert (tmp_path / "fig" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "fig" / "curves.pdf").read_bytes()[:4] == b"%PDF"
    # Seeded bootstrap: the same input gives the same output.
    again = run_script("tools/plot.py", str(root), "--out", str(tmp_path / "fig" / "curves"), "--reps", "500")
    assert again.stdout == result.stdout


def test_iqm_normalized_scores_against_a_hand_computation(runs_root):
    root, data = runs_root
    runs = plot.find_runs([str(root)], warn=lambda m: None)
    assert len(runs) == 12
    summary = plot.summarize(runs, last=10, reps=200, rng=np.random.default_rng(0))
    for env in ("Hopper-v4", "Pendulum-v1"):
        finals = {algo: np.array([data[(algo, env, s)][-10:].mean() for s in range(3)]) for algo in ("td3", "sac")}
        r0 = np.mean([data[(algo, env, s)][0] for algo in ("td3", "sac") for s in range(3)])
        best = max(f.mean() for f in finals.values())
        for algo in ("td3", "sac"):
            expected = 100 * (finals[algo] - r0) / (best - r0)
            np.testing.assert_allclose(summary["normalized"][(env, algo)], expected, rtol=1e-9)
    for row in summary["aggregate"]:
        scores = np.concatenate([summary["normalized"][(env, row["algo"])] for env in ("Hopper-v4", "Pendulum-v1")])
        s = np.sort(scores)  # 6 runs: floor(6 / 4) = 1 dropped at each end
        assert row["iqm"] == pytest.approx(s[1:5].mean())
        assert row["low"] <= row["iqm"] <= row["high"] and row["envs"] == 2 and row["runs"] == 6


def test_iqm_definition():
    assert plot.iqm(np.arange(1, 9)) == pytest.approx(np.mean([3, 4, 5, 6]))   # n=8: drop 2 at each end
    assert plot.iqm([5, 1, 9, 3, 7, 2, 8, 100, -50, 4]) == pytest.approx(np.mean([2, 3, 4, 5, 7, 8]))  # n=10: drop 2
    assert plot.iqm([1, 2, 3]) == pytest.approx(2.0)  # n=3: floor(0.75) = 0 dropped
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).normal(size=(7, 13))
    np.testing.assert_allclose(plot.iqm(x, axis=1), stats.trim_mean(x, 0.25, axis=1))


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_more_seeds():
    values = np.random.default_rng(3).normal(100.0, 20.0, size=40)
    few = plot.bootstrap_mean_ci(values[:4], 2000, np.random.default_rng(0))
    many = plot.bootstrap_mean_ci(values, 2000, np.random.default_rng(0))
    for mean, low, high in (few, many):
        assert low < mean < high
    assert few[0] == pytest.approx(values[:4].mean()) and many[0] == pytest.approx(values.mean())
    assert (many[2] - many[1]) < 0.6 * (few[2] - few[1])
    assert plot.bootstrap_mean_ci([7.0], 100, np.random.default_rng(0)) == (7.0, 7.0, 7.0)
    # Stratified IQM bootstrap: contains the point estimate, narrower with more runs per environment.
    groups = [np.random.default_rng(s).normal(50.0 + 5 * s, 10.0, size=30) for s in range(3)]
    few = plot.stratified_bootstrap_iqm([g[:4] for g in groups], 2000, np.random.default_rng(0))
    many = plot.stratified_bootstrap_iqm(groups, 2000, np.random.default_rng(0))
    assert few[1] <= few[0] <= few[2] and many[1] <= many[0] <= many[2]
    assert (many[2] - many[1]) < 0.6 * (few[2] - few[1])


def test_curve_aligns_runs_of_different_lengths_and_eval_steps(tmp_path):
    a = write_run(tmp_path, "td3", "Hopper-v4", 0, [0, 100, 200, 300, 400], [0, 10, 20, 30, 40], total=400)
    b = write_run(tmp_path, "td3", "Hopper-v4", 1, [0, 200, 400], [0, 40, 80], total=400)
    c = write_run(tmp_path, "td3", "Hopper-v4", 2, [0, 100, 200], [10, 10, 10], total=400)  # partial
    runs = [plot.read_run(str(p)) for p in (a, b, c)]
    assert [r.finished for r in runs] == [True, True, False]
    grid, mean, low, high, seeds = plot.curve(runs, lambda r: r.returns, 500, np.random.default_rng(0))
    assert grid.tolist() == [0, 100, 200, 300, 400]
    assert seeds.tolist() == [3, 3, 3, 2, 2]  # the partial run stops at its last evaluation
    # b is interpolated at 100 and 300 (20, 60); c counts up to step 200 only.
    np.testing.assert_allclose(mean, [10 / 3, 40 / 3, 70 / 3, 45, 60])
    assert np.all(low <= mean + 1e-9) and np.all(mean <= high + 1e-9)


def test_normalized_score_column_and_reference_returns(tmp_path):
    root = tmp_path / "runs"
    steps = np.arange(12) * 100
    for seed in range(2):
        ret = 1000.0 + 100 * seed + np.arange(12)
        write_run(root, "td3_bc", "Hopper-v4", seed, steps, ret, total=1100, normalized=ret / 30.0,
                  name=f"offline{seed}")
        write_run(root, "td3", "HalfCheetah-v4", seed, steps, ret * 5, total=1100, name=f"online{seed}")
    runs = plot.find_runs([str(root)], warn=lambda m: None)
    summary = plot.summarize(runs, 10, 200, np.random.default_rng(0), normalize="d4rl")
    hop = np.array([(1000.0 + 100 * s + np.arange(12))[-10:].mean() / 30.0 for s in range(2)])
    np.testing.assert_allclose(summary["normalized"][("Hopper-v4", "td3_bc")], hop, rtol=1e-4)
    assert "normalized_score column" in summary["methods"]["Hopper-v4"]
    cheetah = np.array([5 * (1000.0 + 100 * s + np.arange(12))[-10:].mean() for s in range(2)])
    lo, hi = plot.D4RL_REF_RETURNS["halfcheetah"]
    np.testing.assert_allclose(summary["normalized"][("HalfCheetah-v4", "td3")], 100 * (cheetah - lo) / (hi - lo))
    assert "D4RL" in summary["methods"]["HalfCheetah-v4"]
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"HalfCheetah-v4": [0.0, 10000.0]}))
    summary = plot.summarize(runs, 10, 200, np.random.default_rng(0), normalize=str(ref))
    np.testing.assert_allclose(summary["normalized"][("HalfCheetah-v4", "td3")], cheetah / 100.0)


def test_duplicate_seed_keeps_the_run_that_got_furthest(tmp_path):
    write_run(tmp_path, "td3", "Hopper-v4", 0, [0, 100], [1, 2], total=300, name="old")
    write_run(tmp_path, "td3", "Hopper-v4", 0, [0, 100, 200, 300], [1, 2, 3, 4], total=300, name="new")
    messages = []
    [run] = plot.find_runs([str(tmp_path)], warn=messages.append)
    assert run.path.endswith("new") and run.finished and "appears twice" in messages[0]


def test_bad_input_is_one_line_and_exit_status_2(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, message in [([str(tmp_path / "empty")], "no run folders"),
                          ([str(tmp_path / "missing")], "not a directory")]:
        result = run_script("tools/plot.py", *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
        assert "Traceback" not in result.stderr
    write_run(tmp_path / "r", "td3", "Hopper-v4", 0, [0, 100], [1, 2], total=100)
    (tmp_path / "bad.json").write_text("{not json")
    result = run_script("tools/plot.py", str(tmp_path / "r"), "--normalize", str(tmp_path / "bad.json"), "--no-figure")
    assert result.returncode == 2 and "--normalize" in result.stderr and "Traceback" not in result.stderr


def published_file(path, numbers, score):
    source = {"citation": "A paper", "protocol": "how they measured", "score": score, "interval": "95% CI", "seeds": 10}
    path.write_text(json.dumps({"sources": {"paper": source}, "numbers": [dict(n, source="paper") for n in numbers]}))
    return str(path)


def test_published_scores_and_t_interval_against_a_hand_computation(tmp_path):
    steps = np.arange(0, 1100, 100)
    seeds = {s: np.round(np.arange(11) * 10.0 + 7 * s, 3) for s in range(3)}
    for s, returns in seeds.items():
        write_run(tmp_path / "runs", "td7", "Hopper-v4", s, steps, returns, total=1000)
    runs = plot.find_runs([str(tmp_path / "runs")], warn=lambda m: None)
    at_step = plot.load_published(published_file(tmp_path / "a.json", [
        {"algo": "td7", "env": "Hopper-v4", "step": 500, "mean": 57.0, "interval": 2.0},
        {"algo": "td7", "env": "Hopper-v4", "step": 500, "mean": 80.0, "interval": 5.0},
        {"algo": "sac", "env": "Hopper-v4", "step": 500, "mean": 1.0, "interval": 1.0}], {"kind": "at_step"}))
    rows = plot.compare_published(runs, at_step)
    assert len(rows) == 2  # no sac runs: no row
    scores = [50.0, 57.0, 64.0]  # the evaluation at step 500 of each seed
    assert rows[0]["scores"] == scores
    half = 4.303 * np.std(scores, ddof=1) / np.sqrt(3)  # t(0.975, 2) s / sqrt(n)
    assert rows[0]["mean"] == pytest.approx(57.0) and rows[0]["half"] == pytest.approx(half, rel=1e-6)
    assert [r["where"] for r in rows] == ["inside", "below"]
    window = plot.load_published(published_file(tmp_path / "w.json", [
        {"algo": "td7", "env": "Hopper-v4", "step": 1000, "mean": 0.0, "interval": 1.0}],
        {"kind": "final_window", "steps": 200}))
    [row] = plot.compare_published(runs, window)
    # The evaluations of the last 200 steps: 800, 900 and 1000.
    assert row["scores"] == pytest.approx([np.mean(seeds[s][8:]) for s in range(3)]) and row["where"] == "above"
    assert plot.t_interval([4.0]) == (4.0, 0.0)


def log_episodes(path, episodes, purge_step=None):
    """A TensorBoard log as the scripts' harness writes it: each episode's return and length at the step it ended;
    a resumed run opens it with purge_step = its resumable step + 1."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(path), purge_step=purge_step)
    for step, ret, length in episodes:
        writer.add_scalar("train/episode_return", ret, step)
        writer.add_scalar("train/episode_length", length, step)
        writer.add_scalar("losses/critic", 0.5, step)
    writer.close()


def test_training_episodes_of_a_resumed_run_and_their_published_score(tmp_path):
    pytest.importorskip("tensorboard")
    import time

    seeds = []
    for s in range(2):
        path = write_run(tmp_path / "runs", "ppo", "Hopper-v4", s, [0, 200, 500], [1.0, 2.0, 3.0], total=500)
        # Killed after step 300, having logged 250 and 300 past its last resumable state (step 200) ...
        log_episodes(path, [(100, 10.0 + s, 100), (150, 20.0, 50), (250, 999.0, 100), (300, 999.0, 50)])
        time.sleep(1.1)  # a later process, a later log file (named by the second it was opened)
        # ... and resumed there: what it logs replaces what the killed process logged after step 200.
        log_episodes(path, [(250, 30.0, 100), (300, 40.0, 50), (500, 50.0 + s, 200)], purge_step=201)
        seeds.append(path)
    steps, returns, lengths = plot.read_episodes(str(seeds[1]))
    assert steps.tolist() == [100, 150, 250, 300, 500] and returns.tolist() == [11.0, 20.0, 30.0, 40.0, 51.0]
    assert lengths.tolist() == [100, 50, 100, 50, 200] and steps.tolist() == lengths.cumsum().tolist()
    # An episodes.csv (the results store) is read first.
    (seeds[1] / "episodes.csv").write_text("step,return,length\n100,1.5,100\n")
    assert [a.tolist() for a in plot.read_episodes(str(seeds[1]))] == [[100], [1.5], [100]]
    (seeds[1] / "episodes.csv").unlink()
    runs = plot.find_runs([str(tmp_path / "runs")], warn=lambda m: None)
    last = plot.load_published(published_file(tmp_path / "e.json", [
        {"algo": "ppo", "env": "Hopper-v4", "step": 500, "mean": 40.0, "interval": 1.0}],
        {"kind": "last_episodes", "episodes": 3}))
    [row] = plot.compare_published(runs, last)
    assert row["scores"] == pytest.approx([40.0, 40 + 1 / 3])  # (30 + 40 + 50 + s) / 3
    assert row["where"] == "inside"
    # The dashed curve of the figure: that score as training goes, at the evaluation steps, averaged over seeds.
    # Step 0: no episode has ended; 200: (10 + s + 20) / 2; 500: the last three, (30 + 40 + 50 + s) / 3.
    grid, mean = plot.training_curve(runs, 3)
    assert grid.tolist() == [200, 500] and mean == pytest.approx([15.25, 40 + 1 / 6])
    if importlib.util.find_spec("matplotlib"):
        assert plot.plot(runs, str(tmp_path / "fig"), 20, np.random.default_rng(0), published=last, formats=("png",))
    # A run without a log cannot be scored so: one line, not a silent gap.
    for name in os.listdir(seeds[0]):
        if name.startswith("events.out"):
            os.remove(seeds[0] / name)
    with pytest.raises(plot.UsageError, match="neither an episodes.csv nor a TensorBoard log"):
        plot.compare_published(runs, last)


def test_a_results_suite_gets_its_figure_table_and_published_points(tmp_path):
    pytest.importorskip("matplotlib")
    store = tmp_path / "store"
    suite = store / "tiny"
    for s in range(2):
        write_run(suite / "td3" / "Hopper-v4" / f"seed{s}", "td3", "Hopper-v4", s, [0, 100, 200], [0, 10 + s, 20 + s],
                  total=200)
    (suite / "suite.json").write_text("{}")
    published_file(store / "published.json", [{"algo": "td3", "env": "Hopper-v4", "step": 200, "mean": 30.0,
                                               "interval": 3.0}], {"kind": "at_step"})
    result = run_script("tools/plot.py", str(suite), "--reps", "100")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in suite.iterdir()) == ["curves.png", "suite.json", "table.md", "td3"]
    table = (suite / "table.md").read_text()
    assert table == result.stdout[:len(table)]
    row = table_row(table.split("## Final performance")[0], "Hopper-v4", "td3")
    assert row[2:8] == ["200", "20 +- 6", "20, 21", "30 +- 3 (95% CI, 10 seeds)", "paper", "below"]
    assert "- paper: A paper. how they measured" in table
    import matplotlib.pyplot as plt

    drawn = []
    real = plt.Axes.errorbar
    try:
        plt.Axes.errorbar = lambda self, x, y, **kw: drawn.append((x, y, kw["yerr"], kw["label"]))
        plot.plot(plot.find_runs([str(suite)], warn=lambda m: None), str(tmp_path / "fig"), 50,
                  np.random.default_rng(0), published=plot.load_published(str(store / "published.json")))
    finally:
        plt.Axes.errorbar = real
    assert drawn == [([200], [30.0], [3.0], "td3: paper (95% CI, 10 seeds)")]


def test_bad_published_numbers_are_one_line(tmp_path):
    write_run(tmp_path / "r", "td3", "Hopper-v4", 0, [0, 100], [1, 2], total=100)
    bad = published_file(tmp_path / "p.json", [{"algo": "td3", "env": "Hopper-v4", "step": 100, "mean": "x",
                                                "interval": 1}], {"kind": "at_step"})
    result = run_script("tools/plot.py", str(tmp_path / "r"), "--published", bad, "--no-figure")
    assert one_error_line(result) and "published" in result.stderr


def test_one_algorithm_without_reference_returns_has_no_iqm_and_few_evaluations_are_said(tmp_path):
    write_run(tmp_path, "ppo", "Hopper-v4", 0, [0, 100, 200], [0.0, 50.0, 90.0], total=200)
    runs = plot.find_runs([str(tmp_path)], warn=lambda m: None)
    summary = plot.summarize(runs, 10, 100, np.random.default_rng(0))
    assert summary["aggregate"] == [] and summary["methods"]["Hopper-v4"].startswith("none: one algorithm")
    text = plot.format_tables(summary, 10)
    assert "None: no environment has a normalization" in text and "| ppo | 100.0 |" not in text
    assert "1 run(s) have no more than 10 evaluations" in text
    # With reference returns the one algorithm is normalized against them.
    summary = plot.summarize(runs, 10, 100, np.random.default_rng(0), normalize="d4rl")
    lo, hi = plot.D4RL_REF_RETURNS["hopper"]
    assert summary["aggregate"][0]["iqm"] == pytest.approx(100 * (np.mean([0, 50, 90]) - lo) / (hi - lo))


def test_a_reader_that_goes_away_costs_nothing(runs_root, tmp_path):
    """`python tools/plot.py runs | head`: no traceback, and the figure is still written."""
    import subprocess

    pytest.importorskip("matplotlib")
    root, _ = runs_root
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "plot.py"), str(root), "--reps", "50",
                             "--out", str(tmp_path / "fig")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # the reader is gone before the first line
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and b"Traceback" not in err, err
    assert (tmp_path / "fig.png").is_file()
