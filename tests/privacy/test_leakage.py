"""The leakage verdict against the permutation nulls (raymia.privacy.leakage)."""

from __future__ import annotations

import math

import pytest

from raymia.privacy.leakage import DETECTED, NOT_DETECTABLE, UNKNOWN, excess, leakage_verdict


@pytest.mark.parametrize(
    ("row", "verdict"),
    [
        # both within their nulls
        (
            {"adv": 0.06, "adv_null_q95": 0.09, "dtc_adv": 0.1, "dtc_adv_null_q95": 0.16},
            NOT_DETECTABLE,
        ),
        # the attacks clear their null
        ({"adv": 0.20, "adv_null_q95": 0.09, "dtc_adv": 0.1, "dtc_adv_null_q95": 0.16}, DETECTED),
        # DtC alone clears its null: still leakage
        ({"adv": 0.05, "adv_null_q95": 0.09, "dtc_adv": 0.3, "dtc_adv_null_q95": 0.16}, DETECTED),
        # DtC off (no dtc columns): judged on the attacks alone
        ({"adv": 0.05, "adv_null_q95": 0.09}, NOT_DETECTABLE),
        (
            {"adv": 0.05, "adv_null_q95": 0.09, "dtc_adv": None, "dtc_adv_null_q95": None},
            NOT_DETECTABLE,
        ),
        # a statistic without its null cannot be cleared, but one above its null still counts
        ({"adv": 0.05, "adv_null_q95": None}, UNKNOWN),
        (
            {"adv": 0.05, "adv_null_q95": 0.09, "dtc_adv": 0.1, "dtc_adv_null_q95": math.nan},
            UNKNOWN,
        ),
        ({"adv": 0.5, "adv_null_q95": 0.09, "dtc_adv": 0.1, "dtc_adv_null_q95": None}, DETECTED),
        ({}, UNKNOWN),
        # at the null's quantile exactly: within it
        ({"adv": 0.09, "adv_null_q95": 0.09}, NOT_DETECTABLE),
    ],
)
def test_leakage_verdict(row, verdict):
    assert leakage_verdict(row) == verdict


def test_excess():
    assert excess(0.2, 0.09) == pytest.approx(0.11)
    assert excess(0.05, 0.09) == 0.0
    assert excess(0.05, None) is None
