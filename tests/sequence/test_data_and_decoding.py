"""Generated data sets are what they claim; beam search of width 1 is greedy decoding."""

from __future__ import annotations

import datetime as dt

import pytest
import torch

from aiforge.data.adding import MEAN_PREDICTOR_MSE, adding_problem
from aiforge.data.dates import FORMATS, date_pairs, date_splits, ordinal
from aiforge.sequence.seq2seq import SRC_VOCAB, TGT_LEN, TGT_VOCAB, decode_tgt, encode_src
from aiforge.sequence.seq2seq_model import Seq2Seq


def test_adding_problem_markers_and_targets() -> None:
    data = adding_problem(5000, 100, seed=0)
    markers = data.x[..., 1]
    assert torch.equal(markers[:, :50].sum(1), torch.ones(5000))      # one marker per half
    assert torch.equal(markers[:, 50:].sum(1), torch.ones(5000))
    assert torch.allclose((data.x[..., 0] * markers).sum(1), data.y)
    mean_mse = float(((data.y - data.y.mean()) ** 2).mean())
    assert abs(mean_mse - MEAN_PREDICTOR_MSE) < 0.01
    assert torch.equal(adding_problem(10, 100, seed=3).x, adding_problem(10, 100, seed=3).x)


def test_every_date_format_is_unambiguous() -> None:
    day = dt.date(1998, 3, 3)
    rendered = {f(day) for f in FORMATS}
    assert {"tue 3 march 1998", "03/03/98", "March 3rd, 1998"} <= rendered
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd"]
    # 2-digit years: 50..99 are the 1900s, 00..49 the 2000s; targets are the true ISO days.
    for pair in date_pairs(300, seed=5):
        iso = dt.date.fromisoformat(pair.iso)
        assert dt.date(1950, 1, 1) <= iso <= dt.date(2049, 12, 31)
        assert str(iso.day) in pair.human


def test_held_out_dates_never_occur_in_training() -> None:
    splits = date_splits(3000, 300, 300)
    seen = {p.human for p in splits["train"]}
    assert not any(p.human in seen for p in splits["val"] + splits["test"])
    assert len(splits["test"]) == 300


@pytest.mark.parametrize("attention", ["bahdanau", "luong", "none"])
def test_beam_of_one_is_greedy(attention: str) -> None:
    torch.manual_seed(0)
    model = Seq2Seq(SRC_VOCAB, TGT_VOCAB, attention).eval()  # type: ignore[arg-type]
    src, mask = encode_src(["tue 3 march 1998", "03/03/98", "the 21st of june 2001"])
    greedy, maps = model.greedy(src, mask, TGT_LEN)
    beam = model.beam_search(src, mask, TGT_LEN, beam=1)
    assert decode_tgt(greedy) == decode_tgt(beam)
    if attention == "none":
        assert maps is None
    else:
        assert maps is not None and maps.shape == (3, TGT_LEN, src.shape[1])
        assert torch.allclose(maps.sum(-1), torch.ones(3, TGT_LEN))    # weights are distributions
        assert float(maps[1, :, 8:].abs().max()) == 0.0                 # padding gets no weight
