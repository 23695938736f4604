"""Videos, progress line, tracking and stop requests: the research-workflow flags every script shares. They live in
the harness, the same text in every script (tests/test_layout.py checks), so each runs on one script here."""

import io
import os

import pytest

from conftest import assert_videos, run_script, skip_if_wandb_installed


@pytest.mark.parametrize("script", ["td7"])  # its evaluation acts with the checkpoint policy
def test_capture_video_writes_mp4s_headless(script, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    result = run_script(f"{script}.py", "--env", "InvertedPendulum-v4", "--total-timesteps", "300",
                        "--start-timesteps", "100", "--batch-size", "32", "--eval-freq", "100",
                        "--eval-episodes", "1", "--capture-video", "--video-every", "2", "--torch-threads", "1",
                        "--run-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [folder] = os.listdir(tmp_path)
    # videos at evaluations 1, 3 and the last
    assert_videos(tmp_path / folder, ["step_0.mp4", "step_200.mp4", "step_300.mp4"])
    assert "Exception ignored" not in result.stderr  # the GL context is freed cleanly


@pytest.mark.parametrize("script", ["td3"])
def test_track_without_wandb_is_one_line(script, tmp_path):
    skip_if_wandb_installed()
    result = run_script(f"{script}.py", "--env", "Pendulum-v1", "--track", "--run-dir", str(tmp_path))
    assert result.returncode == 2 and "--track needs wandb" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("script", ["td3"])
def test_track_mirrors_to_wandb_offline(script, tmp_path):
    pytest.importorskip("wandb")
    env = {"WANDB_MODE": "offline"}
    result = run_script(f"{script}.py", "--env", "Pendulum-v1", "--total-timesteps", "300", "--start-timesteps",
                        "100", "--batch-size", "32", "--eval-freq", "100", "--eval-episodes", "1", "--track",
                        "--torch-threads", "1", "--run-dir", str(tmp_path), extra_env=env)
    assert result.returncode == 0, result.stderr
    [folder] = os.listdir(tmp_path)
    assert any(name.startswith("offline-run-") for name in os.listdir(tmp_path / folder / "wandb"))


@pytest.mark.parametrize("script", ["td3"])
def test_progress_line_only_on_a_terminal_and_never_mixed_with_evaluation_lines(script, monkeypatch):
    module = __import__(script)
    for tty, enabled, shown in ((True, True, True), (False, True, False), (True, False, False)):
        err, out = io.StringIO(), io.StringIO()
        err.isatty = lambda tty=tty: tty
        monkeypatch.setattr(module.sys, "stderr", err)
        monkeypatch.setattr(module.sys, "stdout", out)
        progress = module.Progress(total=100, initial=0, enabled=enabled)
        progress.bar.mininterval = 0  # draw at every update
        progress.update(10)
        assert ("10/100" in err.getvalue()) == shown and "eval" not in err.getvalue()  # nothing to show yet
        progress.write("step       10 | eval return    -123.4", -123.4)
        progress.update(20)
        progress.bar.close()
        assert out.getvalue() == "step       10 | eval return    -123.4\n"  # a whole line of its own
        assert ("20/100" in err.getvalue() and "eval -123.4" in err.getvalue()) == shown


@pytest.mark.parametrize("script", ["td3"])
def test_first_signal_asks_to_stop_second_ctrl_c_stops_at_once(script):
    import signal

    module = __import__(script)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop = module.StopRequests()
        assert not stop.requested
        stop.handle(signal.SIGTERM, None)
        assert stop.requested  # the loop finishes its step, saves and exits 130
        with pytest.raises(SystemExit) as exit_info:
            stop.handle(signal.SIGINT, None)
        assert exit_info.value.code == 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
