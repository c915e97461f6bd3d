"""The command line: the result contract, and bad input as one line, exit 2, nothing written."""

import json

import pytest
from typer.testing import CliRunner

from aiforge.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_help_of_every_command_is_useful():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("list", "show", "run", "bench", "roadmap", "runs", "ui"):
        assert command in result.output
        sub = invoke(command, "--help")
        assert sub.exit_code == 0 and len(sub.output) > 200, command


def test_list_json_has_steps_bars_and_budgets():
    result = invoke("list", "--json")
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["vision.cnn-digits"]["bar"] == {"metric": "test_accuracy", "op": ">=", "value": 0.985}
    assert rows["vision.cnn-digits"]["quick_bar"]["value"] == 0.93
    assert rows["rl.value-iteration"]["step"] == "2"
    assert all(r["budget_s"] > 0 for r in rows.values())


def test_show_lists_fields_with_docs():
    result = runner.invoke(app, ["show", "vision.cnn-digits"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "width" in result.output and "Channels of the first conv block" in result.output


def test_run_writes_the_result_contract(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "rl.value-iteration", "--quick", "--seed", "2", "--out", str(out), "--quiet", "--no-track")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "result.json").read_text())
    assert set(record) == {"recipe", "quick", "seed", "seconds", "metrics", "bar", "passed", "artifacts",
                           "segments"}
    assert record["seconds"] == sum(record["segments"])
    assert record["recipe"] == "rl.value-iteration" and record["quick"] is True and record["seed"] == 2
    assert record["bar"] == {"metric": "success_rate_4x4", "op": ">=", "value": 0.6}
    assert record["passed"] is True
    assert all((out / a).exists() for a in record["artifacts"])
    assert json.loads((out / "config.json").read_text())["seed"] == 2


def test_strict_exits_1_when_the_bar_is_missed(tmp_path):
    result = invoke("run", "vision.cnn-digits", "--quick", "--out", str(tmp_path / "r"), "--quiet",
                    "--no-track", "--strict", "--set", "epochs=1", "--set", "lr=1e-7")
    assert result.exit_code == 1, result.output
    assert json.loads((tmp_path / "r" / "result.json").read_text())["passed"] is False


@pytest.mark.parametrize(("args", "message"), [
    (["run", "vision.cnn-digit"], "did you mean 'vision.cnn-digits'"),
    (["show", "rl.value-iter"], "did you mean 'rl.value-iteration'"),
    (["run", "vision.cnn-digits", "--set", "widht=3"], "unknown config key 'widht'; valid keys: seed"),
    (["run", "vision.cnn-digits", "--set", "lr=fast"], "invalid value 'fast' for 'lr'"),
    (["run", "vision.cnn-digits", "--set", "dropout=1.5"], "invalid value '1.5' for 'dropout'"),
    (["run", "vision.cnn-digits", "--resume", "/no/such/run"], "no such run folder: /no/such/run"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "never"
    result = runner.invoke(app, [*args, "--out", str(out)] if args[0] == "run" and "--resume" not in args else args)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()


def test_an_existing_run_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    result = invoke("run", "rl.value-iteration", "--quick", "--out", str(out), "--no-track")
    assert result.exit_code == 2 and "exists and is not empty" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]


def test_resuming_a_damaged_checkpoint_says_which_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    assert invoke("run", "vision.cnn-digits", "--quick", "--set", "epochs=2", "--out", str(out),
                  "--quiet", "--no-track").exit_code == 0
    newest = out / "checkpoints" / "step-000002" / "state.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    before = sorted(str(p) for p in out.rglob("*"))
    result = invoke("run", "vision.cnn-digits", "--resume", str(out), "--no-track")
    assert result.exit_code == 2
    assert "step-000002 is corrupt" in result.stderr and "previous good checkpoint" in result.stderr
    assert sorted(str(p) for p in out.rglob("*")) == before


def test_runs_lists_tracked_runs_with_their_result(tmp_path):
    assert invoke("run", "rl.value-iteration", "--quick", "--seed", "11", "--out", str(tmp_path / "r"),
                  "--quiet").exit_code == 0
    listed = json.loads(invoke("runs", "--json", "--limit", "50").output)
    mine = [r for r in listed if r["recipe"] == "rl.value-iteration" and r["status"] == "FINISHED"]
    assert mine and mine[0]["passed"] == "true" and mine[0]["metrics"]["success_rate_4x4"] >= 0.6
    table = runner.invoke(app, ["runs"], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "rl.value-iteration" in table.output
