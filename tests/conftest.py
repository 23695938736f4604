"""Shared test fixtures: the project root on sys.path, and a runner for the scripts' command lines."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs `python <script> <args>` from the project root; returns the finished process."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


@pytest.fixture
def script():
    return run_script
