"""The results store (benchmarks/results/) and tools/results.py: the committed runs are what their suites' sweep
commands make, whole, and nothing else; tools/plot.py's tables of each suite are up to date; collect copies only
finished, matching runs; check finds each kind of damage."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, run_script

sys.path.insert(0, os.path.join(ROOT, "tools"))
import results  # noqa: E402

SUITES = results.suites_under(results.STORE)


@pytest.mark.parametrize("path", SUITES, ids=[os.path.basename(p) for p in SUITES])
def test_committed_suite_is_sound(path):
    suite = results.Suite(path)
    assert results.check(suite) == []
    # Its sweep commands are the ones benchmarks/results/README.md documents.
    with open(os.path.join(results.STORE, "README.md")) as f:
        readme = f.read()
    for command in suite.commands:
        assert command in readme, f"{command} is not in benchmarks/results/README.md"
    # Its table is what tools/plot.py makes of the committed runs today.
    if any(os.path.isdir(suite.run_dir(*cell)) for cell in suite.cells):
        with open(os.path.join(path, "table.md")) as f:
            committed = f.read()
        made = run_script("tools/plot.py", path, "--no-figure", "--table", os.devnull)
        assert made.returncode == 0, made.stderr
        assert made.stdout == committed, f"{path}/table.md is stale: python tools/plot.py {path}"
        assert os.path.isfile(os.path.join(path, "curves.png"))


def test_the_readme_shows_what_the_store_holds():
    assert results.readme_block() == results.readme_section(), "python tools/results.py readme --write"


def test_published_numbers_name_their_sources():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import plot

    numbers = plot.load_published(os.path.join(results.STORE, "published.json"))
    assert {(n["algo"], n["env"], n["step"]) for n in numbers} >= {("td7", "HalfCheetah-v4", 300000),
                                                                    ("ppo", "Humanoid-v4", 1000000)}
    for number in numbers:
        assert number["source"]["citation"] and number["source"]["protocol"] and number["source"]["seeds"] > 0


def head_commit():
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    if git.returncode != 0:
        pytest.skip("not a git checkout: the runs record no commit")
    return git.stdout.strip()


TD3 = ["--total-timesteps", "600", "--eval-freq", "250", "--start-timesteps", "300", "--batch-size", "32",
       "--eval-episodes", "2"]
PPO = ["--total-timesteps", "2500", "--eval-freq", "1500", "--num-steps", "512", "--num-minibatches", "4",
       "--update-epochs", "1", "--eval-episodes", "2"]


@pytest.fixture(scope="module")
def small_campaign(tmp_path_factory):
    """Two tiny sweeps (td3 and ppo on Pendulum-v1), one of them run twice with a killed third seed, and their
    suite."""
    base = tmp_path_factory.mktemp("campaign")
    runs, suite = base / "runs", base / "store" / "tiny"
    suite.mkdir(parents=True)
    commands = []
    for algo, flags in (("td3", TD3), ("ppo", PPO)):
        words = ["--algos", algo, "--envs", "Pendulum-v1", "--seeds", "0", "1", "--local", "2", "--root", str(runs),
                 "--", "--torch-threads", "1", *flags]
        result = run_script("tools/sweep.py", *words, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        commands.append("python tools/sweep.py " + " ".join(words))
    # Made from a work tree under edit, the runs say so (git_dirty), which the store refuses (tested below): as if clean.
    for config in runs.glob("*/*/seed*/*/config.json"):
        config.write_text(config.read_text().replace('"git_dirty": true', '"git_dirty": false'))
    # A seed that stopped half way: a run folder with a config and a partial evaluations.csv.
    partial = runs / "td3" / "Pendulum-v1" / "seed0"
    [done] = [p for p in partial.iterdir() if p.is_dir()]
    stopped = runs / "td3" / "Pendulum-v1" / "seed9" / "stopped"
    stopped.mkdir(parents=True)
    shutil.copy(done / "config.json", stopped / "config.json")
    lines = (done / "evaluations.csv").read_text().splitlines()
    (stopped / "evaluations.csv").write_text("\n".join(lines[:2]) + "\n")
    spec = {"sweeps": commands, "torch_threads": 1, "commits": [head_commit()]}
    (suite / "suite.json").write_text(json.dumps(spec))
    return runs, suite


def fresh_copy(small_campaign, tmp_path):
    runs, suite = small_campaign
    copy = tmp_path / "tiny"
    shutil.copytree(suite, copy)
    return runs, results.Suite(str(copy))


def test_collect_copies_the_finished_runs_and_check_passes(small_campaign, tmp_path):
    runs, suite = fresh_copy(small_campaign, tmp_path)
    said = []
    assert results.collect(str(runs), suite, said.append) == 4
    assert any("not finished" in line and "stopped" in line for line in said)
    assert sorted(os.listdir(suite.run_dir("ppo", "Pendulum-v1", 1))) == ["config.json", "episodes.csv",
                                                                          "evaluations.csv"]
    assert results.check(suite, complete=True) == []
    # Its training episodes: Pendulum's 200 steps each, as many as ended in 600 (td3) and 2560 (ppo) steps.
    for algo, ends in (("td3", [200, 400, 600]), ("ppo", list(range(200, 2561, 200)))):
        with open(os.path.join(suite.run_dir(algo, "Pendulum-v1", 0), "episodes.csv")) as f:
            rows = [line.split(",") for line in f.read().splitlines()]
        assert rows[0] == ["step", "return", "length"] and [int(r[0]) for r in rows[1:]] == ends
        assert all(r[2] == "200" and -2000 < float(r[1]) < 0 for r in rows[1:])
    # PPO's schedule: rollouts of 512 steps; the first that crosses 1500 ends at 1536; the end is 2560.
    with open(os.path.join(suite.run_dir("ppo", "Pendulum-v1", 0), "evaluations.csv")) as f:
        assert [int(line.split(",")[0]) for line in f.read().splitlines()[1:]] == [0, 1536, 2560]
    # Collecting again copies nothing and changes nothing.
    assert results.collect(str(runs), suite, said.append) == 0
    assert results.check(suite, complete=True) == []
    # A missing run is only a problem with --complete.
    shutil.rmtree(suite.run_dir("td3", "Pendulum-v1", 1))
    assert results.check(suite) == []
    assert results.check(suite, complete=True) == ["tiny: td3 Pendulum-v1 seed1 is missing"]


def bump_first_mean(text):
    """evaluations.csv with the first row's mean_return one higher than its returns' mean."""
    lines = text.splitlines()
    cells = lines[1].split(",")
    cells[2] = f"{float(cells[2]) + 1:.3f}"
    return "\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n"


def damage(path, edit):
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(edit(text))


@pytest.mark.parametrize("what,edit,message", [
    ("config.json", lambda t: t.replace('"discount": 0.99', '"discount": 0.98'), "discount is 0.98"),
    ("config.json", lambda t: t.replace('"total_timesteps": 600', '"total_timesteps": 500'), "total_timesteps"),
    ("config.json", lambda t: t.replace('"torch_threads": 1', '"torch_threads": 2', 1), "run.torch_threads"),
    ("config.json", lambda t: t.replace('"git_commit": "', '"git_commit": "0'), "git_commit"),
    ("config.json", lambda t: t.replace('"git_dirty": false', '"git_dirty": true'), "git_dirty"),
    ("evaluations.csv", lambda t: "\n".join(t.splitlines()[:-1]) + "\n", "missing [600]"),
    ("evaluations.csv", lambda t: t.replace("\n250,", "\n251,"), "unexpected [251]"),
    ("evaluations.csv", lambda t: bump_first_mean(t), "are not those of its returns"),
    ("episodes.csv", lambda t: "\n".join(t.splitlines()[:2] + t.splitlines()[3:]) + "\n", "missing or counted twice"),
    ("episodes.csv", lambda t: t.replace("\n600,", "\n601,"), "not in order within 1..600"),
    ("episodes.csv", lambda t: t.replace("step,return", "step,reward"), "no step,return,length header"),
])
def test_check_finds_damage(small_campaign, tmp_path, what, edit, message):
    runs, suite = fresh_copy(small_campaign, tmp_path)
    results.collect(str(runs), suite, lambda line: None)
    damage(os.path.join(suite.run_dir("td3", "Pendulum-v1", 0), what), edit)
    problems = results.check(suite)
    assert problems and all("td3/Pendulum-v1/seed0" in p for p in problems) and any(message in p for p in problems)


def test_check_finds_stray_files_and_cells(small_campaign, tmp_path):
    runs, suite = fresh_copy(small_campaign, tmp_path)
    results.collect(str(runs), suite, lambda line: None)
    seed0 = suite.run_dir("td3", "Pendulum-v1", 0)
    with open(os.path.join(seed0, "events.out.tfevents.1"), "w") as f:
        f.write("x")
    shutil.copytree(seed0, suite.run_dir("td3", "Pendulum-v1", 7))
    os.remove(os.path.join(suite.run_dir("td3", "Pendulum-v1", 7), "events.out.tfevents.1"))
    with open(os.path.join(suite.path, "notes.txt"), "w") as f:
        f.write("x")
    problems = results.check(suite)
    assert any("seed0 holds" in p and "events.out" in p for p in problems)
    assert any("seed7 is not in the grid" in p for p in problems)
    assert any("notes.txt does not belong" in p for p in problems)


def test_collect_adds_the_episodes_of_a_run_stored_without_them(small_campaign, tmp_path):
    runs, suite = fresh_copy(small_campaign, tmp_path)
    results.collect(str(runs), suite, lambda line: None)
    path = os.path.join(suite.run_dir("td3", "Pendulum-v1", 0), "episodes.csv")
    before = open(path).read()
    os.remove(path)
    assert any("episodes.csv" in p for p in results.check(suite))
    said = []
    assert results.collect(str(runs), suite, said.append) == 0
    assert open(path).read() == before and results.check(suite) == []
    assert [line.split(":")[0] for line in said if line.startswith("added")] == [
        "added the training episodes of td3 Pendulum-v1 seed0"]


def test_collect_never_overwrites_another_run(small_campaign, tmp_path):
    runs, suite = fresh_copy(small_campaign, tmp_path)
    results.collect(str(runs), suite, lambda line: None)
    path = os.path.join(suite.run_dir("td3", "Pendulum-v1", 0), "evaluations.csv")
    damage(path, lambda t: t + "\n")
    before = open(path).read()
    said = []
    assert results.collect(str(runs), suite, said.append) == 0
    assert open(path).read() == before and any("already holds another run" in line for line in said)


def change_a_return(text, row):
    """evaluations.csv with the last return of a row 0.001 higher (its mean moves by less than the check sees)."""
    lines = text.splitlines()
    cells = lines[row].split(",")
    returns = cells[4].split()
    returns[-1] = f"{float(returns[-1]) + 0.001:.3f}"
    lines[row] = ",".join(cells[:4] + [" ".join(returns)])
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("algo,until,steps", [("td3", 500, [0, 250, 500]), ("ppo", 1536, [0, 1536])])
def test_verify_reruns_a_stored_run_and_finds_a_changed_return(small_campaign, tmp_path, algo, until, steps):
    runs, suite = fresh_copy(small_campaign, tmp_path)
    results.collect(str(runs), suite, lambda line: None)
    run = suite.run_dir(algo, "Pendulum-v1", 1)
    said = []
    assert results.verify(run, until, source=ROOT, say=said.append), said
    assert [int(line.split()[1][:-1]) for line in said if "the same" in line] == steps
    episodes = len(range(200, steps[-1] + 1, 200))  # Pendulum's episodes that ended by the last step compared
    assert said[-1] == f"  training episodes through step {steps[-1]}: identical ({episodes} episodes: step, " \
                       "return, length)"
    # A training episode's return changed is found once the evaluations are compared.
    damage(os.path.join(run, "episodes.csv"), lambda t: t.replace("\n200,-", "\n200,-1"))
    said = []
    assert not results.verify(run, until, source=ROOT, say=said.append)
    assert "training episodes through" in said[-1] and "DIFFERENT at episode 1" in said[-1], said
    damage(os.path.join(run, "evaluations.csv"), lambda t: change_a_return(t, 2))
    said = []
    assert not results.verify(run, until, source=ROOT, say=said.append)
    assert f"step {steps[1]}: DIFFERENT" in said[-1] and sum("the same" in line for line in said) == 1


def test_verify_stops_its_rerun_on_a_stop_request(small_campaign, tmp_path):
    import signal

    runs, suite = fresh_copy(small_campaign, tmp_path)
    results.collect(str(runs), suite, lambda line: None)
    child = subprocess.Popen([sys.executable, "tools/results.py", "verify", suite.run_dir("td3", "Pendulum-v1", 0),
                              "--until", "600", "--source", ROOT], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    first = child.stdout.readline()  # said once the rerun has started
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    folder = os.path.dirname(first.split("--run-dir ")[1].split()[0])
    assert child.returncode == 130 and err.strip() == "results.py: interrupted", first + out + err
    assert not os.path.exists(folder), "the rerun's folder is left behind"


def test_verify_clones_the_runs_commit(small_campaign, tmp_path):
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                            cwd=ROOT)
    if status.returncode != 0 or status.stdout.strip():
        pytest.skip("the work tree that made the small campaign differs from its commit (CI runs a clean clone)")
    runs, suite = fresh_copy(small_campaign, tmp_path)
    results.collect(str(runs), suite, lambda line: None)
    result = run_script("tools/results.py", "verify", suite.run_dir("td3", "Pendulum-v1", 0), "--until", "250")
    assert result.returncode == 0 and f"at {head_commit()[:7]}" in result.stdout, result.stdout + result.stderr
    assert result.stdout.count("the same") == 2


def test_bad_input_is_one_line(tmp_path):
    (tmp_path / "suite.json").write_text('{"sweeps": ["python other.py"], "torch_threads": 1, "commits": []}')
    for args in (["check", str(tmp_path)], ["collect", str(tmp_path / "missing"), str(tmp_path)],
                 ["verify", str(tmp_path)], ["verify", str(tmp_path), "--until", "-5"]):
        result = run_script("tools/results.py", *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "error" in lines[0], result.stderr
