"""Human-written dates and their ISO 8601 form, generated here with fixed seeds.

Each example is a random calendar day between 1950-01-01 and 2049-12-31 written in one of
the formats below, paired with its ISO form "YYYY-MM-DD". The formats are unambiguous by
construction: numeric day/month order is fixed per separator (US month/day with '/', European
day.month with '.') and two-digit years mean 1950-2049.

    tue 3 march 1998        03/03/98            March 3rd, 1998       3.3.1998
    Tuesday, March 3, 1998  3 Mar 1998          the 3rd of march 1998 1998/03/03 ...
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass

FIRST_DAY = dt.date(1950, 1, 1)
LAST_DAY = dt.date(2049, 12, 31)
SPLIT_SEEDS = {"train": 2001, "val": 2002, "test": 2003}  # part of the data set, not of a run

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _month(d: dt.date) -> str:
    return MONTHS[d.month - 1]


def _day(d: dt.date) -> str:
    return DAYS[d.weekday()]


FORMATS: list[Callable[[dt.date], str]] = [
    lambda d: f"{_day(d)[:3]} {d.day} {_month(d)} {d.year}",              # tue 3 march 1998
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",             # 03/03/98
    lambda d: f"{_month(d).title()} {ordinal(d.day)}, {d.year}",           # March 3rd, 1998
    lambda d: f"{d.day}.{d.month}.{d.year}",                               # 3.3.1998
    lambda d: f"{_day(d).title()}, {_month(d).title()} {d.day}, {d.year}", # Tuesday, March 3, 1998
    lambda d: f"{d.day} {_month(d)[:3].title()} {d.year}",                 # 3 Mar 1998
    lambda d: f"the {ordinal(d.day)} of {_month(d)} {d.year}",             # the 3rd of march 1998
    lambda d: f"{d.month}/{d.day}/{d.year}",                               # 3/3/1998
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",                       # 1998/03/03
    lambda d: f"{_month(d)[:3]} {d.day} {d.year % 100:02d}",               # mar 3 98
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year % 100:02d}",             # 03.03.98
    lambda d: f"{_month(d).upper()} {d.day}, {d.year}",                    # MARCH 3, 1998
]


@dataclass(frozen=True)
class DatePair:
    human: str
    iso: str


def random_date(rng: random.Random) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=rng.randrange((LAST_DAY - FIRST_DAY).days + 1))


def date_pairs(n: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[DatePair]:
    """`n` (human, iso) pairs, the same for the same seed; formats drawn uniformly; human
    strings in `exclude` are skipped (drawn again)."""
    rng = random.Random(seed)
    pairs: list[DatePair] = []
    while len(pairs) < n:
        day = random_date(rng)
        human = rng.choice(FORMATS)(day)
        if human not in exclude:
            pairs.append(DatePair(human, day.isoformat()))
    return pairs


def date_splits(n_train: int, n_val: int, n_test: int) -> dict[str, list[DatePair]]:
    """{'train', 'val', 'test'} with fixed seeds. Held-out strings never occur in training
    (short numeric formats would otherwise repeat about 5% of the time), so held-out accuracy
    measures generalisation, not recall."""
    train = date_pairs(n_train, SPLIT_SEEDS["train"])
    seen = frozenset(p.human for p in train)
    return {"train": train, "val": date_pairs(n_val, SPLIT_SEEDS["val"], seen),
            "test": date_pairs(n_test, SPLIT_SEEDS["test"], seen)}
