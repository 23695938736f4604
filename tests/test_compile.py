"""--compile: the compiled update and policy follow the eager ones step for step, and a failed compilation falls
back. --cudagraphs runs its code path here too: on a CPU, torch.compile's reduce-overhead mode compiles without
CUDA graphs, while the scripts still begin a CUDA-graph step at each call and copy out the losses they keep."""

import importlib

import numpy as np
import pytest
import torch

from conftest import read_evaluations, run_script
from datasets_util import one_torch_thread  # noqa: F401 (fixture)

SMALL = {"td3": {"hdim": 32}, "sac": {"hdim": 32}, "ddpg": {"hdim": 32}, "td3_bc": {"hdim": 32},
         "td7": {"actor_hdim": 32, "critic_hdim": 32, "enc_hdim": 32, "zs_dim": 16, "target_update_rate": 50}}


def trained(script, steps, device="cpu", **flags):
    """An agent on 1,000 random 5-d transitions after `steps` updates, and its critic loss at every step."""
    module = importlib.import_module(script)
    torch.manual_seed(0)
    args = module.Args(**flags, **SMALL[script])
    agent = module.Agent(5, 2, args, torch.device(device))
    if args.compile or args.cudagraphs:  # as the harness does
        module.compile_agent(agent, args.cudagraphs)
    rng = np.random.default_rng(0)
    agent.replay_buffer.load({"observations": rng.normal(size=(1000, 5)), "actions": rng.uniform(-1, 1, (1000, 2)),
                              "next_observations": rng.normal(size=(1000, 5)), "rewards": rng.normal(size=1000),
                              "terminals": rng.random(1000) < 0.05})
    torch.manual_seed(1)
    losses = []
    for _ in range(steps):
        agent.train()
        losses.append(float(agent.losses["critic_loss"]))
    return agent, np.array(losses)


@pytest.fixture(scope="module")
def compile_works():
    """torch.compile on CPU needs a C++ compiler and Python's headers; without them there is nothing to compare."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except Exception as e:
        pytest.skip(f"torch.compile does not run on this machine: {type(e).__name__}")


def assert_fast_path_follows_eager(script, flag, device, capsys):
    (eager, eager_losses), (fast, fast_losses) = trained(script, 300, device), trained(script, 300, device, **{flag: True})
    assert "update compiled in" in capsys.readouterr().out  # the first-compile time is printed
    # The same random numbers (target noise, SAC's samples) and the same math: the two runs differ by
    # float32 rounding, which Adam's normalized steps can grow to a few learning rates over 300 steps.
    np.testing.assert_allclose(fast_losses, eager_losses, rtol=1e-3)
    for name in ("actor", "critic"):
        for a, b in zip(getattr(eager, name).parameters(), getattr(fast, name).parameters()):
            torch.testing.assert_close(b, a, rtol=0, atol=3e-3)
    # Every loss kept for logging is still readable (under CUDA graphs, a copy of a replay's output).
    assert eager.losses.keys() == fast.losses.keys()
    np.testing.assert_allclose([float(v) for v in fast.losses.values()], [float(v) for v in eager.losses.values()],
                               rtol=1e-2, atol=1e-4)
    # The compiled policy acts as the eager one with the same weights, on every path select_action takes
    # (the exploration noise too, drawn from the same seeds).
    module = importlib.import_module(script)
    module.load_agent_state(fast, module.agent_state(eager))
    paths = {"td7": [(True, False), (False, False), (False, True)], "td3_bc": [(False,)]}.get(script, [(False,), (True,)])
    for state in np.random.default_rng(2).normal(size=(5, 5)).astype(np.float32):
        for path in paths:
            actions = []
            for agent in (eager, fast):
                np.random.seed(3), torch.manual_seed(3)
                actions.append(agent.select_action(state, *path))
            np.testing.assert_allclose(actions[1], actions[0], rtol=0, atol=1e-5)
    assert "policy compiled in" in capsys.readouterr().out


@pytest.mark.parametrize("script, flag", [(script, "compile") for script in ("td3", "td7", "sac", "ddpg", "td3_bc")]
                         + [("td7", "cudagraphs")])  # the script whose state the graphs update in place
def test_compiled_update_and_policy_follow_the_eager_ones(script, flag, compile_works, one_torch_thread, capsys):
    assert_fast_path_follows_eager(script, flag, "cpu", capsys)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("flag", ["compile", "cudagraphs"])
@pytest.mark.parametrize("script", ["td3", "td7", "sac", "ddpg", "td3_bc"])
def test_on_cuda_compile_and_cudagraphs_follow_eager(script, flag, capsys):
    assert_fast_path_follows_eager(script, flag, "cuda", capsys)


@cuda
@pytest.mark.parametrize("script", ["td3.py", "td7.py", "sac.py", "ddpg.py"])
def test_on_cuda_a_cudagraphs_run_trains_and_evaluates(script, tmp_path):
    common = ["--env", "Pendulum-v1", "--device", "cuda", "--cudagraphs", "--start-timesteps", "250",
              "--eval-freq", "250", "--eval-episodes", "2", "--run-dir", str(tmp_path)]
    first = run_script(script, *common, "--total-timesteps", "500")
    assert first.returncode == 0, first.stderr
    _, rows = read_evaluations(tmp_path)
    assert [row["step"] for row in rows] == ["0", "250", "500"]
    assert "update compiled in" in first.stdout and "policy compiled in" in first.stdout
    assert "warning" not in first.stderr


@pytest.mark.parametrize("failing_call", [1, 3])  # the first call, or a later one (a graph reached late)
def test_a_failed_compilation_falls_back_to_eager_with_one_warning(failing_call, monkeypatch, capsys):
    import td3

    def broken_compile(fn, **kwargs):
        calls = 0

        def fast(*inputs):
            nonlocal calls
            calls += 1
            if calls >= failing_call:
                raise RuntimeError("no C++ compiler\nmore detail")
            return fn(*inputs)
        return fast

    monkeypatch.setattr(torch, "compile", broken_compile)
    (eager, eager_losses), (fallback, fallback_losses) = trained("td3", 20), trained("td3", 20, compile=True)
    captured = capsys.readouterr()
    assert captured.err.count("warning: torch.compile failed, running eager (RuntimeError: no C++ compiler)") == 1
    assert ("compiled in" in captured.out) == (failing_call > 1)
    assert np.array_equal(fallback_losses, eager_losses)
    assert td3.Args().compile is False  # eager stays the default


def test_cudagraphs_begins_a_step_per_call_and_copies_out_the_kept_tensors(monkeypatch):
    """What a GPU needs of the wrapper, checked without one: reduce-overhead mode, a CUDA-graph step begun before
    each call, and the tensors left in `keep` copied, since the next replay overwrites a graph's outputs."""
    import td3
    modes, steps_begun, stored = [], [], []
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None: modes.append(mode) or fn)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps_begun.append(len(stored)))
    kept = {}

    def update(x):
        stored.append(x.sum())
        kept["loss"] = stored[-1]
        return x + 1

    fast = td3.compiled(update, cudagraphs=True, keep=kept)
    for i in range(3):
        assert torch.equal(fast(torch.full((2,), float(i))), torch.full((2,), i + 1.0))
        assert kept["loss"] is not stored[-1] and torch.equal(kept["loss"], stored[-1])
    assert modes == ["reduce-overhead"] and steps_begun == [0, 1, 2]
