"""The live-serving harness for the tests: the one copy is ``bench/_browser.py`` (shipped as
``huma_rt.bench._browser``, also used by the serving benchmarks); this name stays for the test
modules that import it."""

from huma_rt.bench._browser import CHROMIUM, REPO, Page, Server, noise, silence, write_wav48  # noqa: F401
