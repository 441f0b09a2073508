"""Root conftest: loads the project's pytest plugins and registers the Hypothesis profiles."""

import os

from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

from mechclaims.model.memory import reuse_freed_memory

# One BLAS thread per process. The claims multiply small matrices, where BLAS threads cost
# more than they give; under pytest-xdist they also oversubscribe the cores and spin-wait (5x
# slower seen on this 2-core machine). Each xdist worker reads this conftest too.
threadpool_limits(limits=1)
# Freed temporaries are reused rather than faulted in afresh (see model/memory.py): 2-3x faster.
reuse_freed_memory()

# The project's own plugins, mechclaims.evidence.plugin and mechclaims.fixtures.plugin, are loaded
# by their `pytest11` entry points (the project is installed, editable or not, before tests run).
pytest_plugins = ["pytester"]

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
