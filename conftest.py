"""Root conftest: loads the project's pytest plugins and registers the Hypothesis profiles."""

import os

from hypothesis import HealthCheck, settings

# pytest-xdist runs each worker as a process of its own; BLAS threads on top of those
# oversubscribe the cores and spin-wait (a 6x slowdown seen on this 2-core machine). Workers
# inherit the environment when they start, before they import numpy: one BLAS thread each.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# The evidence plugin is registered by the `pytest11` entry point when the project is installed;
# naming it here too is harmless (pytest skips a plugin already registered under this name) and
# makes a plain checkout work. The model options (--seeds, --model-preset, --model-set) and their
# fixtures live in `fixtures`.
pytest_plugins = ["evidence.plugin", "fixtures.plugin", "pytester"]

settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
