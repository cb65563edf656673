"""The shared config field checks: bounds, bools, None, non-finite values, names in messages."""

from dataclasses import dataclass

import pytest

from huma_rt.config_checks import check_ints, check_numbers
from huma_rt.errors import InputError


@dataclass
class _Cfg:
    steps: object = 3
    threads: object = None
    lr: object = 0.1
    weight: object = 0.5


def test_good_values_pass():
    check_ints(_Cfg(), {"steps": 1}, owner="Cfg")
    check_ints(_Cfg(), {"threads": 1}, owner="Cfg", optional=True)
    check_numbers(_Cfg(), {"lr": 0}, positive=True)
    check_numbers(_Cfg(), {"weight": 0}, upper={"weight": 1})


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "3", None])
def test_bad_int_names_field_bound_and_value(value):
    with pytest.raises(InputError, match=rf"Cfg\.steps must be an integer >= 1; got {value!r}"):
        check_ints(_Cfg(steps=value), {"steps": 1}, owner="Cfg")


def test_optional_int_accepts_none_but_not_zero():
    check_ints(_Cfg(threads=None), {"threads": 1}, optional=True)
    with pytest.raises(InputError, match="threads must be None or an integer >= 1; got 0"):
        check_ints(_Cfg(threads=0), {"threads": 1}, optional=True)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.1, True, "0.1"])
def test_bad_number(value):
    with pytest.raises(InputError, match=r"lr must be a finite number >= 0; got"):
        check_numbers(_Cfg(lr=value), {"lr": 0})


def test_positive_and_upper_bounds():
    with pytest.raises(InputError, match="lr must be a finite number > 0; got 0"):
        check_numbers(_Cfg(lr=0), {"lr": 0}, positive=True)
    with pytest.raises(InputError, match=r"weight must be a finite number >= 0 and <= 1; got 1\.5"):
        check_numbers(_Cfg(weight=1.5), {"weight": 0}, upper={"weight": 1})
