"""The time left and the progress line: honest from the first line (the random phase's speed is never extrapolated
to training; until training has been measured the time left is said to be not known), and moving inside a long step
(a TD7 checkpoint batch, PPO's update, an evaluation), so that a run never looks hung. The harness is the same text
in every script (tests/test_layout.py), so its objects are tested on td3 with a fake clock, and its calls on td7
(checkpoint batches) and ppo (minibatch updates)."""

import io

import pytest

import ppo
import td3
import td7
from conftest import make_args
from datasets_util import random_hopper, write_d4rl


class Clock:
    """A clock the test moves."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_random_phase_is_not_extrapolated_and_training_is_measured_for_a_minute_first():
    clock = Clock()
    pace = td3.Pace(total=10_000, step=0, start=1000, warmup=60, clock=clock)
    for step in range(1, 1001):  # uniform-random actions at 1000 steps/s: the old estimate said 0:00:10 left here
        clock.now += 0.001
        pace.step(step)
        assert pace.measure(step) is None and pace.left(step) == "time left not known yet"
    begun = clock.now
    for step in range(1001, 10_000):  # training at 20 steps/s: 7.5 minutes to go from the end of the random phase
        clock.now += 0.05
        pace.step(step)
        if clock.now - begun < 60:
            assert pace.left(step) == "time left not known yet"
        else:
            speed, left = pace.measure(step)
            assert speed == pytest.approx(20) and left == pytest.approx((10_000 - step) * 0.05)
        if step == 9000:
            assert pace.left(step) == "0:00:50 left" and pace.left(step, speed=True) == "20.0 steps/s, 0:00:50 left"
    assert pace.left(10_000) == "0:00:00 left"  # the last evaluation line


def test_a_resumed_run_past_its_random_phase_is_measured_from_where_it_resumed():
    clock = Clock()
    pace = td3.Pace(total=10_000, step=4000, start=1000, warmup=60, clock=clock)
    clock.now += 100
    assert pace.measure(5000) == pytest.approx((10, 500))


def td7_like(pace, clock, total, start, checks):
    """A TD7-like run on `pace`: random steps (1 ms each) to `start`, an episode of acting (100 steps of 10 ms), then
    cycles of a checkpoint batch (100 gradient steps of 0.5 s, at the start of a step) and an episode of acting.
    Calls checks(step, true seconds left) at each environment step and each gradient step."""
    step = 0
    while step < start:
        clock.now += 0.001
        step += 1
        pace.step(step)
        checks(step, None)
    acting, batch = 100 * 0.01, 100 * 0.5
    while step < total:
        if step >= start + 100:  # the batch that the last episode end released
            pace.batch_begins()
            for _ in range(100):
                clock.now += 0.5
                checks(step, None)
            pace.batch_done(step)
        for _ in range(100):
            clock.now += 0.01
            step += 1
            pace.step(step)
            cycles_left = (total - step) // 100
            checks(step, cycles_left * (acting + batch) + (acting - (step % 100) * 0.01 if step % 100 else 0))


def test_a_run_that_trains_in_batches_is_measured_from_batch_end_to_batch_end():
    clock, seen = Clock(), []
    pace = td3.Pace(total=3000, step=0, start=1000, warmup=60, clock=clock)

    def checks(step, true_left):
        measured = pace.measure(step)
        seen.append(measured is not None)
        if measured is None:
            return
        speed, left = measured
        assert speed == pytest.approx(100 / 51)  # a cycle's speed, exactly: not an acting phase, not a batch
        if true_left is not None:  # within one batch of the truth (the last episode's batch comes after the end)
            assert true_left - 1e-6 <= left <= true_left + 51 + 1e-6

    td7_like(pace, clock, 3000, 1000, checks)
    # Known once two batch ends are a minute apart: from the third batch's end on (acting 1 s + batches 51 s).
    assert seen.index(True) > 0 and all(seen[seen.index(True):])


def last_drawn(err) -> str:
    """The line tqdm drew last on `err`."""
    return err.getvalue().split("\r")[-1].rstrip()


def test_the_progress_line_shows_the_time_left_the_evaluation_and_the_part_under_way(monkeypatch):
    err, out = io.StringIO(), io.StringIO()
    err.isatty = lambda: True
    monkeypatch.setattr(td3.sys, "stderr", err)
    monkeypatch.setattr(td3.sys, "stdout", out)
    clock = Clock()
    monkeypatch.setattr(td3.time, "monotonic", clock)
    progress = td3.Progress(1000, 0, True, td3.Pace(1000, 0, start=100, warmup=60, clock=clock))
    progress.bar.mininterval = 0
    progress.update(50)
    assert "50/1000" in last_drawn(err) and "time left not known yet" in last_drawn(err)
    progress.write("step       50 | eval return    -123.4", -123.4)
    progress.update(100)
    clock.now += 100
    progress.update(200)  # 1 step/s for 100 s since the random phase ended
    assert "200/1000" in last_drawn(err) and last_drawn(err).endswith(", 1.0 steps/s, 0:13:20 left, eval -123.4]")
    draws = err.getvalue().count("\r")
    for i in range(1, 1001):  # a batch of gradient steps, the environment steps standing still
        progress.show("gradient step", i, 1000)
        assert last_drawn(err).endswith(f", eval -123.4, gradient step {1 if i < 513 else 513}/1000]")
        clock.now += 2 ** -10  # drawn every 0.5 s (512 of these), not at each gradient step
    assert err.getvalue().count("\r") == draws + 2
    progress.show()  # the batch is over
    progress.update(300)
    assert last_drawn(err).endswith(", eval -123.4]") and out.getvalue() == "step       50 | eval return    -123.4\n"
    progress.bar.close()


class Shown:
    """Records what a run's progress line is told: ("step", n) for update(n), and the parts shown."""

    def __init__(self, module, monkeypatch):
        self.calls = []
        update, show = module.Progress.update, module.Progress.show

        def update_and_record(progress, step):
            self.calls.append(("step", step))
            update(progress, step)

        def show_and_record(progress, *part):
            self.calls.append(part)
            show(progress, *part)

        monkeypatch.setattr(module.Progress, "update", update_and_record)
        monkeypatch.setattr(module.Progress, "show", show_and_record)


def test_a_td7_checkpoint_batch_and_an_evaluation_move_the_progress_line(tmp_path, monkeypatch):
    shown = Shown(td7, monkeypatch)
    # Pendulum's 200-step episodes; training starts at the episode end at 200, so the first checkpoint batch, of
    # 200 gradient steps, is released at the episode end at 400 and trained at the start of step 400.
    td7.launch(make_args(td7, env="Pendulum-v1", total_timesteps=600, start_timesteps=100, eval_freq=300,
                         eval_episodes=2, device="cpu", torch_threads=1, actor_hdim=32, critic_hdim=32, enc_hdim=32,
                         zs_dim=16, batch_size=32, run_dir=str(tmp_path), progress=False))
    calls = shown.calls
    at = calls.index(("step", 400))
    assert calls[at + 1:at + 201] == [("gradient step", i, 200) for i in range(1, 201)]  # the batch, step by step
    assert calls[at + 201:at + 203] == [(), ("step", 401)]
    first = calls.index(("evaluation episode", 1, 2))  # the evaluation at step 0, episode by episode
    assert calls[first:first + 3] == [("evaluation episode", 1, 2), ("evaluation episode", 2, 2), ()]


def test_ppo_update_moves_the_progress_line(tmp_path, monkeypatch):
    shown = Shown(ppo, monkeypatch)
    ppo.launch(make_args(ppo, env="Pendulum-v1", total_timesteps=256, num_steps=128, num_minibatches=4,
                         update_epochs=2, eval_freq=256, eval_episodes=1, device="cpu", torch_threads=1,
                         run_dir=str(tmp_path), progress=False))
    parts = [call for call in shown.calls if call and call[0] == "gradient step"]
    assert parts == [("gradient step", i, 8) for i in range(1, 9)] * 2  # 2 epochs of 4 minibatches, per rollout


def test_every_evaluation_line_of_a_short_run_says_the_time_left_is_not_known_yet(tmp_path, capsys):
    """A run shorter than the minute of training the estimate needs: no extrapolated time left, until the end."""
    td3.launch(make_args(td3, env="Pendulum-v1", total_timesteps=450, start_timesteps=150, eval_freq=200,
                         eval_episodes=1, batch_size=32, hdim=32, device="cpu", torch_threads=1,
                         run_dir=str(tmp_path), progress=False))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert [line.rsplit("|", 1)[1].strip() for line in lines] == ["time left not known yet"] * 3 + ["0:00:00 left"]


def test_an_offline_run_is_timed_from_its_first_step(tmp_path, monkeypatch):
    """td7.py's --start-timesteps (25000) is an online setting: an offline run has no random phase to leave out."""
    starts, init = [], td7.Pace.__init__

    def init_and_record(pace, total, step, start=0, **kwargs):
        starts.append(start)
        init(pace, total, step, start, **kwargs)

    monkeypatch.setattr(td7.Pace, "__init__", init_and_record)
    dataset = write_d4rl(str(tmp_path / "hopper-random-v2.hdf5"), random_hopper())
    td7.launch(make_args(td7, offline=True, dataset=dataset, total_timesteps=20, eval_freq=20, eval_episodes=1,
                         batch_size=32, actor_hdim=32, critic_hdim=32, enc_hdim=32, zs_dim=16, device="cpu",
                         torch_threads=1, run_dir=str(tmp_path / "runs"), progress=False))
    assert starts[-1] == 0  # the run's (the first is a placeholder's)
