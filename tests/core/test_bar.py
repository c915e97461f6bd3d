from aiforge.core.registry import Bar


def test_a_bar_holds_its_headline_metric():
    bar = Bar("acc", ">=", 0.9)
    assert bar.passed({"acc": 0.9}) and not bar.passed({"acc": 0.89})
    assert not bar.passed({}), "a missing metric must not pass"


def test_every_extra_condition_must_hold_too():
    bar = Bar("fd", "<", 10.0, also=(Bar("min_share", ">=", 0.05), Bar("max_share", "<=", 0.15)))
    good = {"fd": 5.0, "min_share": 0.07, "max_share": 0.12}
    assert bar.passed(good)
    assert not bar.passed({**good, "max_share": 0.2})
    assert not bar.passed({k: v for k, v in good.items() if k != "min_share"})
    assert str(bar) == "fd < 10 and min_share >= 0.05 and max_share <= 0.15"
    assert bar.as_dict()["also"][1] == {"metric": "max_share", "op": "<=", "value": 0.15}
    assert "also" not in Bar("acc", ">=", 0.9).as_dict()
