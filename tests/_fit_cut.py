"""A static fit cut short at a given iteration, as Ctrl-C would, for the resume tests."""

import pytest
from huma_rt.train.fit_static import fit_static


class FitInterrupted(KeyboardInterrupt):
    """Raised from the fit's progress callback."""


def fit_cut_at(data, cfg, out, iteration: int) -> None:
    """Run fit_static(data, cfg, out) and interrupt it when it reports ``iteration``."""

    def stop(rec: dict) -> None:
        if rec["iteration"] == iteration:
            raise FitInterrupted

    with pytest.raises(FitInterrupted):
        fit_static(data, cfg, out, progress=stop)
