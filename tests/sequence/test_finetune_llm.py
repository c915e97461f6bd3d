"""sequence.finetune-llm: the instruction data, response-only labels, the loss against
transformers' own, cached decoding against `generate`, and LoRA runs on a tiny random Llama
saved locally (learning, save/load, determinism, clear errors)."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from aiforge.core import InputError, Result, load_model, run_recipe
from aiforge.core.checkpoint import CheckpointError, latest_checkpoint
from aiforge.data.instructions import (
    MAX_RESPONSE_CHARS,
    MIN_RESPONSE_CHARS,
    InstructionPair,
    read_jsonl,
    split_by_group,
    stdlib_docstring_pairs,
    write_jsonl,
)
from aiforge.sequence.finetune_llm import (
    FinetuneLLMConfig,
    greedy_answers,
    mixed_batches,
    rehearsal_set,
)
from aiforge.sequence.finetune_llm_chat import generate_reply, load_finetuned, stream_reply
from aiforge.sequence.finetune_llm_encode import (
    IGNORE,
    chat_prompt,
    collate,
    encode_all,
    encode_pair,
    response_logits,
    response_loss,
    response_nll,
)
from aiforge.sequence.finetune_llm_general import GENERAL_QUESTIONS, REHEARSAL_PROMPTS
from aiforge.sequence.finetune_llm_tiny import save_tiny_llama

NAME = "sequence.finetune-llm"


@pytest.fixture(scope="module")
def pairs() -> list[InstructionPair]:
    return stdlib_docstring_pairs()


@pytest.fixture(scope="module")
def data_file(pairs: list[InstructionPair], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 real pairs as a user's JSON-lines file (faster than re-parsing the stdlib per run)."""
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    write_jsonl(pairs[::4][:400], path)
    return path


@pytest.fixture(scope="module")
def tiny_model(pairs: list[InstructionPair], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Llama and its BPE tokenizer, saved like any Hugging Face model folder."""
    torch.manual_seed(0)
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama",
                           [f"{p.prompt}\n{p.response}" for p in pairs])


@pytest.fixture(scope="module")
def tiny(tiny_model: Path) -> tuple[object, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model).eval(), AutoTokenizer.from_pretrained(tiny_model)


def _run(out: Path, **overrides: object) -> Result:
    return run_recipe(NAME, quick=True, out=out, overrides=overrides, track=False, quiet=True)


def test_stdlib_pairs_are_real_docstrings(pairs: list[InstructionPair]) -> None:
    assert len(pairs) > 1000 and len({p.prompt for p in pairs}) == len(pairs)
    assert all(MIN_RESPONSE_CHARS <= len(p.response) <= MAX_RESPONSE_CHARS for p in pairs)
    by_prompt = {p.prompt: p.response for p in pairs}
    assert by_prompt["What does the Python function `textwrap.dedent` do?"].startswith(
        "Remove any common leading whitespace")


def test_split_holds_out_whole_modules(pairs: list[InstructionPair]) -> None:
    splits = split_by_group(pairs, 64)
    assert len(splits.test) == 64 and len(splits.train) + 64 <= len(pairs)
    assert not {p.group for p in splits.train} & {p.group for p in splits.test}
    assert split_by_group(pairs, 64).test == splits.test            # the split is part of the data


@pytest.mark.parametrize(("text", "message"), [
    ('{"prompt": "a", "response": "b"}\n{"prompt": "a"\n', r"pairs\.jsonl:2 is not valid JSON"),
    ('{"prompt": "a", "response": "b"}\n{"prompt": "a", "answer": "b"}\n', "needs non-empty string"),
    ('{"prompt": "a", "response": "b"}\n', "at least 2 are needed"),
])
def test_bad_instruction_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_jsonl(path)


def test_labels_keep_exactly_the_response(tiny: tuple[object, object]) -> None:
    _, tokenizer = tiny
    example = encode_pair(tokenizer, "What is 2 + 2?", "It is 4.", max_tokens=64)
    assert example is not None
    head = tokenizer(chat_prompt(tokenizer, "What is 2 + 2?"), add_special_tokens=False).input_ids
    assert example.ids[:len(head)] == head and example.labels[:len(head)] == [IGNORE] * len(head)
    answer = [t for t in example.labels if t != IGNORE]
    assert tokenizer.decode(answer) == "It is 4.<|im_end|>"        # the end of turn is learned too
    assert encode_pair(tokenizer, "x " * 100, "y", max_tokens=16) is None


def test_response_loss_equals_transformers_loss(tiny: tuple[object, object],
                                                pairs: list[InstructionPair]) -> None:
    model, tokenizer = tiny
    batch = collate(encode_all(tokenizer, pairs[:6], 96), tokenizer.pad_token_id)
    ours = response_loss(model, batch)                  # output layer on response positions only
    reference = model(**batch).loss                     # transformers: all positions, -100 ignored
    assert abs(float(ours) - float(reference)) < 1e-5


def test_cached_stream_matches_generate(tiny: tuple[object, object]) -> None:
    from transformers import GenerationConfig

    model, tokenizer = tiny
    prompt = "What does the Python function `json.dumps` do?"
    ids = tokenizer(chat_prompt(tokenizer, prompt), return_tensors="pt", add_special_tokens=False).input_ids
    settings = GenerationConfig(max_new_tokens=20, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id)
    reference = model.generate(ids, generation_config=settings)[0, ids.shape[1]:]
    expected = tokenizer.decode(reference, skip_special_tokens=True)
    assert "".join(stream_reply(model, tokenizer, prompt, 20)) == expected


def test_rehearsal_mixes_a_fixed_share_into_every_batch() -> None:
    cfg = FinetuneLLMConfig(model="tiny-random", steps=12, batch_size=4, rehearsal=0.5)
    mixed = list(mixed_batches(50, 10, cfg))
    assert len(mixed) == 12 and all(len(t) == 4 and len(r) == 2 for t, r in mixed)
    assert sorted(i for _, r in mixed[:5] for i in r) == list(range(10))   # shuffled passes
    plain = list(mixed_batches(50, 10, cfg.model_copy(update={"rehearsal": 0.0})))
    assert all(r == [] for _, r in plain)
    assert [t for t, _ in plain] == [t for t, _ in mixed]             # same task order either way
    assert all(r == [] for _, r in mixed_batches(50, 0, cfg))          # nothing to rehearse


def test_rehearsal_examples_are_the_base_models_own_greedy_replies(tiny: tuple[object, object]) -> None:
    model, tokenizer = tiny
    cfg = FinetuneLLMConfig(model="tiny-random", rehearsal_tokens=12, eval_batch_size=3)
    prompts = list(REHEARSAL_PROMPTS[:5])
    said, examples = rehearsal_set(model, tokenizer, prompts, cfg)
    assert [p.response for p in said] == greedy_answers(model, tokenizer, prompts, 12, 5)
    for prompt, example in zip(prompts, examples, strict=True):
        head = tokenizer(chat_prompt(tokenizer, prompt), add_special_tokens=False).input_ids
        assert example.labels[:len(head)] == [IGNORE] * len(head) and len(example.ids) > len(head)
    # teacher-forced on its own reply, the base's top token is the label at every response position
    logits, targets = response_logits(model, collate(examples, tokenizer.pad_token_id))
    assert torch.equal(logits.argmax(-1), targets)


def test_rehearsal_and_check_sets_are_disjoint() -> None:
    questions = {q for q, _ in GENERAL_QUESTIONS}
    assert len(questions) == len(GENERAL_QUESTIONS) >= 48 and not questions & set(REHEARSAL_PROMPTS)


@pytest.fixture(scope="module")
def lora_run(tiny_model: Path, data_file: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Result, Path]:
    out = tmp_path_factory.mktemp("run") / "run"
    return _run(out, model=str(tiny_model), data=str(data_file), n_test=48, answer_tokens=8), out


def test_lora_learns_the_task_on_a_local_model(lora_run: tuple[Result, Path]) -> None:
    result, _ = lora_run
    assert result.passed, result.metrics                            # ppl_drop >= 0.4
    m = result.metrics
    assert m["trainable_params"] < 0.3 * m["total_params"]          # only the adapters train
    assert "general_retained" not in m                              # a random model knows nothing
    assert {"figures/loss.png", "general_answers.md", "samples.md", "model"} <= set(result.artifacts)
    assert m["rehearsal_pairs"] == len(REHEARSAL_PROMPTS)               # quick mixes 4 per 16
    assert "data/rehearsal.jsonl" in set(result.artifacts)


def test_adapter_saves_and_reloads(lora_run: tuple[Result, Path], data_file: Path) -> None:
    result, out = lora_run
    files = {p.name for p in (out / "model").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "aiforge-model.json"} <= files
    assert "model.safetensors" not in files                          # no copy of the base weights
    model, tokenizer = load_finetuned(out)
    test = [InstructionPair(**json.loads(line)) for line in (out / "data/test.jsonl").read_text().splitlines()]
    nll, count = response_nll(model, encode_all(tokenizer, test, 128), tokenizer.pad_token_id, 16)
    assert math.exp(nll / count) == pytest.approx(result.metrics["tuned_ppl"], rel=1e-4)
    reply = generate_reply(out, test[0].prompt, max_tokens=12)
    assert reply == "".join(stream_reply(model, tokenizer, test[0].prompt, 12))
    # core.load_model rebuilds the same merged model through the recipe's own loader
    ids = torch.tensor([tokenizer(test[0].prompt)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(load_model(out)(ids).logits, model(ids).logits)


def test_same_seed_same_numbers(tiny_model: Path, data_file: Path, tmp_path: Path) -> None:
    small = {"model": str(tiny_model), "data": str(data_file), "steps": 4, "n_test": 16,
             "answer_tokens": 4, "n_samples": 0}
    first, second = _run(tmp_path / "a", **small), _run(tmp_path / "b", **small)
    keep = [k for k in first.metrics if "seconds" not in k and "per_s" not in k]
    assert {k: first.metrics[k] for k in keep} == {k: second.metrics[k] for k in keep}


def test_bad_input_fails_before_anything_is_written(tmp_path: Path, tiny_model: Path,
                                                    data_file: Path) -> None:
    with pytest.raises(InputError, match="model folder not found"):
        _run(tmp_path / "a", model=str(tmp_path / "no-model"))
    with pytest.raises(InputError, match="instruction file not found"):
        _run(tmp_path / "b", data=str(tmp_path / "none.jsonl"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(InputError, match="lora_targets"):
        _run(tmp_path / "c", model=str(tiny_model), data=str(data_file), lora_targets="no_such_proj")


def test_reply_rejects_bad_input(lora_run: tuple[Result, Path], tmp_path: Path) -> None:
    _, out = lora_run
    with pytest.raises(InputError, match="empty"):
        generate_reply(out, "  ")
    with pytest.raises(InputError, match="no such run"):
        generate_reply(tmp_path / "nope", "hi")


# --- resuming an interrupted run ----------------------------------------------------------------

class Killed(Exception):
    """Stands for the process dying (power cut, OOM kill) right after a checkpoint."""


@pytest.fixture(scope="module")
def interrupted(tiny_model: Path, data_file: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Result, Path, Path]:
    """(result, folder) of a run left alone, and the folder of the same run killed right after
    its first checkpoint (step 2 of 6). LoRA dropout is on, so a resumed run can only match
    if the RNG is restored too."""
    import aiforge.sequence.finetune_llm_resume as resume

    root = tmp_path_factory.mktemp("resume")
    small = {"model": str(tiny_model), "data": str(data_file), "steps": 6, "checkpoint_every": 2,
             "lora_dropout": 0.1, "n_test": 16, "answer_tokens": 4, "n_samples": 0}
    whole = _run(root / "whole", **small)
    real = resume.save_checkpoint

    def save_then_die(*args: Any, **kwargs: Any) -> Path:
        real(*args, **kwargs)
        raise Killed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resume, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            _run(root / "cut", **small)
    assert not (root / "cut" / "result.json").exists()
    assert [p.name for p in (root / "cut" / "checkpoints").iterdir()] == ["step-000002"]
    return whole, root / "whole", root / "cut"


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(
        interrupted: tuple[Result, Path, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    whole, whole_dir, cut = interrupted
    shutil.copytree(cut, tmp_path / "cut")
    resumed = run_recipe(NAME, resume=tmp_path / "cut", track=False, quiet=True)

    a = load_file(whole_dir / "model" / "adapter_model.safetensors")
    b = load_file(tmp_path / "cut" / "model" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)      # bit for bit
    clock = [k for k in whole.metrics if "seconds" in k or "per_s" in k]
    assert {k: v for k, v in whole.metrics.items() if k not in clock} == \
        {k: v for k, v in resumed.metrics.items() if k not in clock}
    first = latest_checkpoint(whole_dir / "checkpoints")
    last = latest_checkpoint(tmp_path / "cut" / "checkpoints")
    assert first is not None and last is not None and first.step == last.step == 6
    assert first.state["losses"] == last.state["losses"]                # the history of all 6 steps
    saved = load_file(last.path / "model.safetensors")                  # the adapters, not the base
    assert len(saved) == len(a) and all("lora_" in k for k in saved)


def test_resume_from_a_corrupt_checkpoint_is_one_clear_error(
        interrupted: tuple[Result, Path, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aiforge.cli import app

    _, _, cut = interrupted
    shutil.copytree(cut, tmp_path / "cut")
    weights = tmp_path / "cut" / "checkpoints" / "step-000002" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF                                                    # one bit-rotted byte
    weights.write_bytes(bytes(data))
    bad = CliRunner().invoke(app, ["run", NAME, "--resume", str(tmp_path / "cut"), "--no-track"])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        f"error: checkpoint {weights.parent} is corrupt: model.safetensors fails its checksum"]
    assert not (tmp_path / "cut" / "result.json").exists() and weights.read_bytes() == bytes(data)


def test_resume_refuses_a_checkpoint_of_other_data(
        interrupted: tuple[Result, Path, Path], data_file: Path, tmp_path: Path) -> None:
    _, _, cut = interrupted
    shutil.copytree(cut, tmp_path / "cut")
    other = tmp_path / "other.jsonl"
    # the same prompts, edited answers: the file a user fixed between the two parts of a run
    write_jsonl([replace(p, response=p.response.upper()) for p in read_jsonl(data_file)], other)
    meta = json.loads((tmp_path / "cut" / "run.json").read_text())
    meta["config"]["data"] = str(other)
    (tmp_path / "cut" / "run.json").write_text(json.dumps(meta))
    before = (tmp_path / "cut" / "data" / "train.jsonl").read_text()
    with pytest.raises(CheckpointError, match="trained on other examples"):
        run_recipe(NAME, resume=tmp_path / "cut", track=False, quiet=True)
    assert (tmp_path / "cut" / "data" / "train.jsonl").read_text() == before


@pytest.mark.slow
def test_smollm2_full_setting_clears_its_bar(tmp_path: Path) -> None:
    """The full bar on the real SmolLM2-135M-Instruct (several minutes on 2 cores)."""
    result = run_recipe(NAME, out=tmp_path / "run", track=False, quiet=True)
    assert result.metrics["ppl_drop"] >= 0.2 and result.metrics["general_retained"] >= 0.9


def test_generate_command_replies_with_the_finetuned_model(lora_run: tuple[Result, Path]) -> None:
    from typer.testing import CliRunner

    from aiforge.cli import app

    _, out = lora_run
    model, tokenizer = load_finetuned(out)
    expected = "".join(stream_reply(model, tokenizer, "What does json.dumps do?", 6))
    runner = CliRunner()
    ok = runner.invoke(app, ["generate", NAME, "--run", str(out), "--prompt", "What does json.dumps do?",
                             "--max-tokens", "6", "--temperature", "0"])
    assert ok.exit_code == 0 and ok.stdout.rstrip("\n") == expected
    bad = runner.invoke(app, ["generate", NAME, "--run", str(out), "--prompt", " "])
    assert bad.exit_code == 2 and "error:" in bad.output
