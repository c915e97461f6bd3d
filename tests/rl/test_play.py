"""`aiforge play`: evaluates a saved agent, writes a GIF, and rejects bad input with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiforge.cli import app
from aiforge.core import InputError, run_recipe
from aiforge.rl.commands import play


@pytest.fixture(scope="module")
def taxi_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("play") / "taxi"
    run_recipe("rl.q-learning", quick=True, out=out, track=False, quiet=True,
               overrides={"eval_episodes": 20})
    return out


def test_play_evaluates_and_writes_a_gif(taxi_run: Path, tmp_path: Path) -> None:
    gif = tmp_path / "taxi.gif"
    result = play("rl.q-learning", taxi_run, episodes=20, gif=gif)
    assert result["mean_return"] > 0  # a random Taxi policy scores about -770
    assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    assert result["gif_frames"] >= 2


def test_cli_play_prints_the_mean_return(taxi_run: Path) -> None:
    res = CliRunner().invoke(app, ["play", "rl.q-learning", "--run", str(taxi_run), "--episodes", "5"])
    assert res.exit_code == 0, res.output
    assert "mean return" in res.output


@pytest.mark.parametrize("args", [
    ["play", "rl.ppo", "--run", "RUN"],                       # the run is a q-learning run
    ["play", "rl.q-learning", "--run", "/no/such/run"],
    ["play", "rl.q-learning", "--run", "RUN", "--gif", "x.png"],
    ["play", "rl.q-learning", "--run", "RUN", "--episodes", "0"],
    ["play", "vision.cnn-digits", "--run", "RUN"],
])
def test_cli_bad_input_exits_2_with_one_error_line(taxi_run: Path, args: list[str]) -> None:
    res = CliRunner().invoke(app, [a.replace("RUN", str(taxi_run)) for a in args])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1


def test_play_rejects_an_unknown_recipe(taxi_run: Path) -> None:
    with pytest.raises(InputError, match="playable"):
        play("rl.nothing", taxi_run)
