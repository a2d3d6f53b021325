"""The config loader: schema validation, overrides, one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from suite.config import config_digest, dump_yaml, from_dict
from suite.errors import ConfigError
from suite.schema import SuiteConfig, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_defaults_and_typed_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "data:\n  image_size: 128\n  clip_percentiles: [1, 99]\n"))
    assert isinstance(cfg, SuiteConfig)
    assert cfg.data.image_size == 128
    assert cfg.data.clip_percentiles == (1.0, 99.0)  # ints accepted where floats are expected
    assert cfg.data.aspect == "pad"  # default kept
    assert cfg.run.out_dir == Path("runs")


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  image_size: 128\n")
    cfg = load_config(path, ["data.image_size=64", "data.class_names=[a, b]", "run.name=x"])
    assert cfg.data.image_size == 64
    assert cfg.data.class_names == ["a", "b"]
    assert cfg.run.name == "x"


def test_unknown_key_names_key_file_and_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  image_sise: 128\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "data.image_sise" in message and str(path) in message
    assert "did you mean 'image_size'" in message and "allowed keys" in message


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'modle'.*allowed keys here: run, data"):
        load_config(write(tmp_path, "modle: {}\n"))


def test_wrong_type_names_expected_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "data:\n  image_size: big\n"))
    assert "data.image_size" in str(err.value) and "expected int or null" in str(err.value)
    with pytest.raises(ConfigError, match="bool"):
        load_config(None, ["data.seed=true"])  # a bool is not an int


def test_literal_lists_allowed_values() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.aspect=squash"])
    assert "'pad', 'crop', 'stretch'" in str(err.value)


def test_tuple_length_checked() -> None:
    with pytest.raises(ConfigError, match="expected exactly 3"):
        load_config(None, ["data.split_fractions=[0.8, 0.2]"])


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, [f"data.images_dir={tmp_path / 'nope'}"])
    assert load_config(None, [f"data.images_dir={tmp_path}"]).data.images_dir == tmp_path


def test_unknown_override_key_and_bad_syntax() -> None:
    with pytest.raises(ConfigError, match="<command line>.*data.nope"):
        load_config(None, ["data.nope=1"])
    with pytest.raises(ConfigError, match="has no '='"):
        load_config(None, ["data.seed"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_yaml_is_safe_loaded(tmp_path: Path) -> None:
    # a python tag must not construct objects: safe_load refuses it
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "run:\n  name: !!python/object/apply:os.system ['true']\n"))


def test_round_trip_and_digest(tmp_path: Path) -> None:
    cfg = load_config(None, ["data.image_size=32"])
    again = load_config(write(tmp_path, dump_yaml(cfg)))
    assert again == cfg
    assert config_digest(again) == config_digest(cfg)
    assert config_digest(load_config(None, ["data.image_size=33"])) != config_digest(cfg)


def _schema(path: Path) -> type:
    """Which schema a shipped config is read with: by folder or by its top-level sections."""
    from suite.evaluation.classify.config import ClassifyConfig
    from suite.evaluation.segment.config import SegmentEvalConfig
    from suite.pipeline.config import PipelineConfig

    if path.parent.name == "evaluate":
        return ClassifyConfig if path.name.startswith("classify") else SegmentEvalConfig
    sections = set(yaml.safe_load(path.read_text()) or {})
    return PipelineConfig if "stages" in sections else SuiteConfig


@pytest.mark.parametrize(
    "path",
    sorted(Path(__file__).resolve().parents[2].glob("configs/**/*.yaml")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_every_shipped_config_loads(path: Path) -> None:
    # data paths are placeholders a user fills in: only the keys and types are checked here
    data = yaml.safe_load(path.read_text()) or {}
    for section in ("data", "ingest"):
        if isinstance(data.get(section), dict):
            data[section] = {
                k: None if k in ("shards", "test_shards", "synthetic") else v
                for k, v in data[section].items()
            }
    from_dict(_schema(path), data, source=str(path))


def test_tagged_union_picks_the_schema_by_kind(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, "model:\n  kind: ddpm_diffusers\n  block_out_channels: [8, 16]\n")
    )
    assert type(cfg.model).__name__ == "DiffusersDDPMConfig"
    assert cfg.model.block_out_channels == (8, 16)
    cfg = load_config(write(tmp_path, "model:\n  kind: ddpm_lucidrains\n"), ["model.dim=32"])
    assert cfg.model.dim == 32


def test_tagged_union_errors_name_the_kind_and_its_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.kind.*'ddpm_lucidrains', 'ddpm_diffusers'"):
        load_config(write(tmp_path, "model:\n  kind: gan\n"))
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "model:\n  kind: ddpm_lucidrains\n  block_out_channels: [8]\n"))
    assert "model.block_out_channels" in str(err.value) and "dim_mults" in str(err.value)
    with pytest.raises(ConfigError, match="unknown key .model.block_out_channels.*dim_mults"):
        load_config(
            write(tmp_path, "model:\n  kind: ddpm_lucidrains\n"), ["model.block_out_channels=[8]"]
        )
