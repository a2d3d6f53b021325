"""The resume options of `synmed train generator` and `synmed pretrain`, checked together."""

from __future__ import annotations

import pytest

from suite.cli import main, parse_args
from suite.errors import ConfigError
from suite.train.cli_options import resume_options


@pytest.mark.parametrize("command", [["train", "generator"], ["pretrain"]])
def test_flags_map_to_the_entry_points_arguments(command: list[str]) -> None:
    def options(*flags: str) -> dict[str, object]:
        return resume_options(parse_args([*command, "cfg.yaml", *flags]))

    assert options() == {"resume": "no", "allow_config_change": False}
    assert options("--restart") == {"resume": "restart", "allow_config_change": False}
    both = options("--resume", "--allow-config-change")
    assert both == {"resume": "yes", "allow_config_change": True}
    with pytest.raises(ConfigError, match="contradict"):
        options("--resume", "--restart")
    with pytest.raises(ConfigError, match="applies to a resumed run only"):
        options("--allow-config-change")


def test_contradicting_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "no-such.yaml", "--restart", "--auto-resume"]) == 2
    assert "--restart and --resume/--auto-resume contradict" in capsys.readouterr().err
