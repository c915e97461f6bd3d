"""A run really killed (SIGKILL) after a checkpoint resumes to the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import time

from aiforge.core import run_recipe

ARGS = ["vision.cnn-digits", "--quick", "--seed", "3", "--set", "epochs=10", "--quiet", "--no-track"]


def _aiforge(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "aiforge", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    out = tmp_path / "killed"
    child = _aiforge("run", *ARGS, "--out", str(out))
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "step-000002").exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (out / "result.json").exists(), "the child finished before it was killed"

    resumed = _aiforge("run", "vision.cnn-digits", "--resume", str(out), "--quiet", "--no-track")
    _stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    resumed_metrics = json.loads((out / "result.json").read_text())["metrics"]

    straight = run_recipe("vision.cnn-digits", quick=True, seed=3, overrides={"epochs": "10"},
                          out=tmp_path / "straight", quiet=True, track=False)
    assert resumed_metrics == straight.metrics
    assert resumed_metrics["epochs_run"] == 10
