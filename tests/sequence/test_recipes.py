"""The sequence recipes train to their quick bars, reload from their runs, and repeat exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiforge.core import InputError, Result, load_model, run_recipe
from aiforge.data.adding import MEAN_PREDICTOR_MSE, adding_problem
from aiforge.data.text_corpus import encode
from aiforge.sequence.gpt_model import GPT
from aiforge.sequence.seq2seq import Seq2Seq, translate


def _run(name: str, out: Path, **overrides: object) -> Result:
    return run_recipe(name, quick=True, out=out, overrides=overrides, track=False, quiet=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Result, Path]]:
    done = {}
    for name in ("sequence.lstm", "sequence.gru", "sequence.gpt", "sequence.seq2seq"):
        out = tmp_path_factory.mktemp(name.replace(".", "-")) / "run"
        done[name] = (_run(name, out), out)
    return done


@pytest.mark.parametrize("name", ["sequence.lstm", "sequence.gru", "sequence.gpt", "sequence.seq2seq"])
def test_quick_setting_clears_its_bar(runs: dict[str, tuple[Result, Path]], name: str) -> None:
    result, out = runs[name]
    assert result.passed, result.metrics
    assert (out / "result.json").is_file() and (out / "model").is_dir()


@pytest.mark.parametrize("name", ["sequence.lstm", "sequence.gru"])
def test_rnn_beats_the_mean_predictor_and_reloads(runs: dict[str, tuple[Result, Path]], name: str) -> None:
    result, out = runs[name]
    assert result.metrics["test_mse"] < MEAN_PREDICTOR_MSE / 3
    model = load_model(out)
    data = adding_problem(200, 20, seed=7)
    mse = float(((model(data.x) - data.y) ** 2).mean())
    assert mse < MEAN_PREDICTOR_MSE / 3                       # the reloaded model still adds


def test_gpt_writes_samples_and_reloads(runs: dict[str, tuple[Result, Path]]) -> None:
    result, out = runs["sequence.gpt"]
    sample = (out / "samples.txt").read_text()
    assert sample.startswith("def ") and len(sample) > 150
    model = load_model(out)
    assert isinstance(model, GPT)
    x = encode("import os\nimport sys\n\n\ndef main():\n    ")[None]
    a, b = model(x), model(x)
    assert torch.equal(a, b)
    # A trained model puts more probability on the real next characters than uniform does.
    loss = torch.nn.functional.cross_entropy(a[0, :-1], x[0, 1:])
    assert float(loss) < result.metrics["uniform_ce"]


def test_seq2seq_reloads_and_translates(runs: dict[str, tuple[Result, Path]]) -> None:
    _, out = runs["sequence.seq2seq"]
    model = load_model(out)
    assert isinstance(model, Seq2Seq)
    texts = ["tue 3 march 1998", "03/03/98", "March 3rd, 1998"]
    assert translate(model, texts) == ["1998-03-03"] * 3
    assert translate(model, texts, beam=3) == ["1998-03-03"] * 3


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    small = {"n_train": 600, "n_val": 100, "n_test": 100, "epochs": 1}
    first = _run("sequence.gru", tmp_path / "a", **small)
    second = _run("sequence.gru", tmp_path / "b", **small)
    assert first.metrics == second.metrics


def test_missing_corpus_is_a_clear_error_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="corpus file not found"):
        _run("sequence.gpt", tmp_path / "run", corpus_path=str(tmp_path / "nope.txt"))
    assert not (tmp_path / "run").exists()


def test_cli_generate_streams_and_translate_answers(runs: dict[str, tuple[Result, Path]]) -> None:
    from typer.testing import CliRunner

    from aiforge.cli import app

    cli = CliRunner()
    gpt_run, s2s_run = runs["sequence.gpt"][1], runs["sequence.seq2seq"][1]
    out = cli.invoke(app, ["generate", "sequence.gpt", "--run", str(gpt_run), "--prompt", "def ",
                           "--max-tokens", "40"])
    assert out.exit_code == 0 and out.stdout.startswith("def ") and len(out.stdout) >= 44
    out = cli.invoke(app, ["translate", "03/03/98", "--run", str(s2s_run)])
    assert out.exit_code == 0 and out.stdout.strip() == "03/03/98\t1998-03-03"
    for args in (["translate", "x", "--run", str(gpt_run)],
                 ["generate", "sequence.gpt", "--run", str(gpt_run), "--max-tokens", "0"],
                 ["generate", "sequence.lstm", "--run", str(gpt_run)]):
        bad = cli.invoke(app, args)
        assert bad.exit_code == 2 and bad.stderr.startswith("error: ")


def test_gpt_trains_on_any_text_file(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 400)
    result = _run("sequence.gpt", tmp_path / "run", corpus_path=str(corpus), epochs=2,
                  steps_per_epoch=60, eval_chars=1000, sample_chars=20)
    # A repeated sentence is easy: far below the uniform 4.58 nats after 120 steps.
    assert result.metrics["val_ce"] < 2.0
    assert result.metrics["ngram_ce"] < 0.5                  # the 3-gram all but memorises it
