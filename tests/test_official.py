"""benchmarks/official.py --check, short: our update against the official code, for each algorithm whose official
checkout an environment variable names (TD3_PATH: github.com/sfujim/TD3, for TD3 and DDPG; TD7_PATH; TD3_BC_PATH),
skipped otherwise (CI machines cannot fetch GitHub). In float64, where the two must agree to 1e-9 of scale; and the
check must fail when our update or our normalization is perturbed a little. Its bad input is checked everywhere."""

import importlib.util
import os

import pytest

from conftest import ROOT, one_error_line, run_script
from datasets_util import one_torch_thread  # noqa: F401 (autouse: one torch thread)

SPEC = importlib.util.spec_from_file_location("official_check", os.path.join(ROOT, "benchmarks", "official.py"))
official = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(official)

VARIABLES = {"TD3": "TD3_PATH", "DDPG": "TD3_PATH", "TD7": "TD7_PATH", "TD3_BC": "TD3_BC_PATH"}
STEPS = 30  # 15 delayed actor steps (DDPG: 30); TD7's first hard copy (step 250) is for the full check


def checkout(algo: str) -> dict:
    """The official modules of `algo`, from the checkout its variable names; a skip where none is named."""
    variable, repo = VARIABLES[algo], official.REPOS[algo]
    path = os.environ.get(variable)
    if not path:
        pytest.skip(f"{variable} is not set (a checkout of github.com/sfujim/{repo} to check {algo} against)")
    return official.load_official(path, repo)


@pytest.mark.parametrize("algo", list(VARIABLES))
def test_our_update_is_the_official_one(algo):
    result = official.compare(algo, checkout(algo), STEPS, float32=False)
    assert result["ok"], result["failures"]
    # Every loss was compared: the critic's (and TD7's encoder's) each step, the actor's every policy_freq steps.
    actor_steps = STEPS if algo == "DDPG" else STEPS // 2
    assert result["run64"]["counts"]["actor"] == actor_steps
    assert len(result["run64"]["records"]["ours"]["losses"]) == STEPS * (len(official.LOSSES[algo]) - 1) + actor_steps
    assert all(result["d64"][c].scaled <= official.F64_TOL for c in official.columns(algo))
    if algo in official.OFFLINE:
        assert result["stored32"]["ok"]


def scaled_reward(module):
    """Our update with every reward larger by 1 part in 10^7: far below float32 noise in a loss, far above float64's."""
    update = module.Agent.update

    def perturbed(self, state, action, next_state, reward, not_done):
        return update(self, state, action, next_state, reward * (1 + 1e-7), not_done)
    return "update", perturbed


def other_eps(module):
    """td3_bc's normalization with eps 1.001e-3 instead of the official 1e-3."""
    load_dataset = module.Agent.load_dataset
    return "load_dataset", lambda self, dataset: load_dataset(self, dataset, eps=1.001e-3)


@pytest.mark.parametrize("algo, perturbation", [(algo, scaled_reward) for algo in VARIABLES] +
                         [("TD3_BC", other_eps)])
def test_the_check_fails_when_ours_differs(algo, perturbation, monkeypatch):
    modules = checkout(algo)
    module = importlib.import_module(algo.lower())  # the module official.Ours builds from
    monkeypatch.setattr(module.Agent, *perturbation(module))
    result = official.compare(algo, modules, 4, float32=False)
    assert not result["ok"]
    if perturbation is other_eps:  # the two buffers' normalized states differ: the batches are not the same
        assert "different rows" in result["mismatch"]
    else:
        assert result["mismatch"] is None and any(line.startswith("float64 losses") for line in result["failures"])


def test_the_command_line_checks_every_named_checkout():
    named = {repo: os.environ[variable] for variable, repo in
             (("TD3_PATH", "TD3"), ("TD7_PATH", "TD7"), ("TD3_BC_PATH", "TD3_BC")) if os.environ.get(variable)}
    if not named:
        pytest.skip("none of TD3_PATH, TD7_PATH, TD3_BC_PATH is set (checkouts of github.com/sfujim/...)")
    flags = [item for repo, path in named.items() for item in (f"--{repo.lower().replace('_', '-')}", path)]
    result = run_script("benchmarks/official.py", *flags, "--check", "--check-steps", "3",
                        extra_env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for algo, repo in official.REPOS.items():
        rows = [line for line in result.stdout.splitlines() if line.startswith(f"| {algo}, float")]
        assert len(rows) == (2 if repo in named else 0) and all(row.endswith("| pass |") for row in rows), rows


def fake_checkout(tmp_path, repo: str) -> str:
    """A folder with the file names of a checkout of github.com/sfujim/<repo> (empty files: never imported here)."""
    folder = tmp_path / repo
    folder.mkdir()
    for name in official.CHECKOUTS[repo]:
        (folder / f"{name}.py").write_text("")
    return str(folder)


@pytest.mark.parametrize("flags", [
    ["--check"],  # no checkout named
    [],  # nothing to time
    ["--td3-bc", "TD3_BC", "--steps", "1"],  # TD3+BC is not timed
    ["--td3-bc", "missing", "--check"],
    ["--td3", "TD3_BC", "--check"],  # a checkout of another repository
    ["--td3-bc", "TD3_BC", "--check", "--check-steps", "0"],
])
def test_bad_input_is_one_line_and_status_2(flags, tmp_path, monkeypatch, capsys):
    fake_checkout(tmp_path, "TD3_BC")
    flags = [str(tmp_path / flag) if flag in ("TD3_BC", "missing") else flag for flag in flags]
    monkeypatch.setattr("sys.argv", ["official.py", *flags])
    with pytest.raises(SystemExit) as exit_info:
        official.main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and "error" in lines[0], lines


def test_bad_input_from_the_command_line():
    """The same through a real process: no traceback."""
    assert one_error_line(run_script("benchmarks/official.py", "--check"))
