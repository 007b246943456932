"""A local Ray for the tests that start one: its own temp dir, no dashboard, shut down after.

Only what the test started is shut down (`ray.shutdown()`), never other Rays on the machine.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def local_ray(num_cpus: int, num_gpus: int = 0) -> Iterator[None]:
    """Start a local Ray with these logical resources in a temp dir of its own; yield; stop it."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="raymia-test-ray-", dir="/tmp")
    ray.init(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        _temp_dir=temp_dir,
        include_dashboard=False,
        configure_logging=False,
        _node_ip_address="127.0.0.1",
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
