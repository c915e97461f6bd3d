"""A saved model's files carry SHA-256 sums; anything changed after the run refuses to load."""

import json

import pytest

from aiforge.core import load_model, run_recipe
from aiforge.core.loading import load_predictor
from aiforge.core.model_files import FILES, ModelFilesError, verify_model_files


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    run_recipe("vision.cnn-digits", quick=True, out=out, overrides={"epochs": "1", "width": "8"},
               quiet=True, track=False)
    return out


def test_a_finished_run_records_every_model_file(run_dir):
    record = json.loads((run_dir / "model" / FILES).read_text())["files"]
    assert set(record) == {"model.safetensors", "aiforge-model.json"}
    assert all(len(entry["sha256"]) == 64 for entry in record.values())
    assert verify_model_files(run_dir / "model", required=True)


@pytest.mark.parametrize("tamper", ["flip", "truncate", "add", "remove"])
def test_a_changed_model_folder_refuses_to_load(run_dir, tmp_path, tamper):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir / "model", copy)
    weights = copy / "model.safetensors"
    if tamper == "flip":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
    elif tamper == "truncate":
        weights.write_bytes(weights.read_bytes()[:-8])
    elif tamper == "add":
        (copy / "extra.bin").write_bytes(b"x")
    else:
        weights.unlink()
    with pytest.raises(ModelFilesError, match="refusing to load"):
        load_model(copy)
    with pytest.raises(ModelFilesError, match="refusing to load"):
        load_predictor(copy)


def test_the_serving_path_refuses_a_model_without_sums(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(run_dir / "model", copy)
    (copy / FILES).unlink()
    load_model(copy)  # a model saved before sums were recorded still loads for inspection
    with pytest.raises(ModelFilesError, match="records no checksums"):
        load_predictor(copy)
