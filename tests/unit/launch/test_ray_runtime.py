"""Errors across the Ray boundary: a SynmedError reaches the user as itself, not as Ray's dump."""

from __future__ import annotations

import pytest
from ray.exceptions import RayTaskError

from suite.errors import ConfigError, ShardError
from suite.launch.ray_runtime import error_text, raise_carried, unwrap_synmed_errors


def test_a_synmed_error_inside_a_ray_task_error_is_raised_as_itself() -> None:
    wrapped = RayTaskError(
        "shard_sampler", "Traceback ...", ShardError("/o/shard-00001.h5", "rerun")
    )
    with pytest.raises(ShardError) as err, unwrap_synmed_errors():
        raise wrapped.as_instanceof_cause()
    assert type(err.value) is ShardError and err.value.what == "/o/shard-00001.h5"
    assert err.value.fix == "rerun" and "Traceback" not in str(err.value)


def test_other_errors_pass_unchanged() -> None:
    with pytest.raises(RayTaskError), unwrap_synmed_errors():
        raise RayTaskError("f", "Traceback ...", ValueError("a bug")).as_instanceof_cause()


def test_a_carried_error_keeps_its_kind_and_fix() -> None:
    text = error_text(ConfigError("--workers is 0", "pass --workers 1 or more"))
    with pytest.raises(
        ConfigError, match=r"--workers is 0 \(and 2 more shard\(s\) failed\)"
    ) as err:
        raise_carried(text, also=2)
    assert err.value.fix == "pass --workers 1 or more"
