"""The mask_ddpm family: the one-hot input and its dropout, guidance, pairs that keep their masks,
training and resume through the suite's loop, `synmed sample --conditions`, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from suite.cli import main
from suite.errors import DataError
from suite.generative.base import Conditions, SampleOptions
from suite.train import run_state
from tests.integration.helpers import synmed_here
from tests.unit.data.helpers import pattern

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "configs/generator/tiny_mask_ddpm.yaml"
RUN = "tiny-mask-ddpm"


def masked_set(
    directory: Path, n: int = 8, *, ids: int = 2, names: list[str] | None = None, masks: bool = True
) -> Path:
    """``n`` 16 px rows whose masks hold ids 0..ids-1 (``names`` as the set's mask_names)."""
    from suite.data.writer import ShardSetWriter

    directory.mkdir(parents=True)
    attrs = {"source": "real", "class_names": ["a"], "label_kind": "multiclass"}
    if names is not None:
        attrs["mask_names"] = names
    writer = ShardSetWriter(directory, attrs, shard_size=4)
    for i in range(n):
        row = {"images": pattern(i), "index": i, "split": 0, "source": f"img{i}.png", "labels": 0}
        if masks:
            row["masks"] = (pattern(i + 100) % ids).astype(np.uint8)
        writer.add(row)
    writer.close()
    return directory


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return masked_set(tmp_path_factory.mktemp("md") / "s", names=["background", "lesion"])


def model(*overrides: str):
    from suite.generative.families import build_generator
    from suite.schema import load_config

    torch.manual_seed(0)
    return build_generator(load_config(TINY, list(overrides)).model)


def config(shards: Path, out: Path, *extra: str):
    from suite.schema import load_config

    return load_config(
        TINY, [f"data.shards={shards}", "data.split=null", f"run.out_dir={out}", *extra]
    )


def binary_masks(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 1, 16, 16)) > 0.5).astype(np.uint8)


def test_the_loss_is_finite_and_its_gradient_reaches_the_mask_channels() -> None:
    m = model()
    batch = {"image": torch.rand(4, 1, 16, 16), "mask": torch.from_numpy(binary_masks(4))}
    loss = m(batch, "model")
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grad = m.unet.conv_in.weight.grad
    assert m.unet.conv_in.in_channels == 1 + 2  # the image and the mask's two classes
    assert grad is not None and grad[:, 1:].abs().sum() > 0  # the mask channels learn


def test_conditioning_dropout_zeroes_a_rows_one_hot_and_keeps_the_others() -> None:
    m = model()
    masks = torch.from_numpy(binary_masks(3))
    drop = torch.tensor([False, True, False])
    onehot = m.mask_channels(masks, drop)
    assert onehot.shape == (3, 2, 16, 16)
    assert torch.equal(onehot[1], torch.zeros(2, 16, 16))
    for row in (0, 2):  # one 1 per pixel, at the pixel's class
        assert torch.equal(onehot[row].sum(0), torch.ones(16, 16))
        assert torch.equal(onehot[row].argmax(0), masks[row, 0].long())


def test_guidance_one_is_one_unet_call_and_other_scales_mix_both() -> None:
    m = model().eval()
    x, t = torch.randn(2, 1, 16, 16), torch.tensor(7)
    cond = m.mask_channels(torch.from_numpy(binary_masks(2)))
    with torch.no_grad():
        plain = m.unet(torch.cat([x, cond], 1), t.expand(2)).sample
        uncond = m.unet(torch.cat([x, torch.zeros_like(cond)], 1), t.expand(2)).sample
        assert torch.equal(m.denoise(x, t, cond, 1.0), plain)
        guided = m.denoise(x, t, cond, 3.0)
    torch.testing.assert_close(guided, uncond + 3.0 * (plain - uncond), atol=1e-5, rtol=1e-5)


def test_pairs_keep_their_masks_and_images_do_not_depend_on_the_batching() -> None:
    m = model()
    masks = binary_masks(4)
    options = SampleOptions(sampler="ddim", steps=3)
    whole = m.sample([0, 1, 2, 3], 5, Conditions(masks=masks), options)
    assert np.array_equal(whole.masks, masks) and whole.images.shape == (4, 1, 16, 16)
    for i in range(4):
        alone = m.sample([i], 5, Conditions(masks=masks[i : i + 1]), options)
        assert np.array_equal(alone.images, whole.images[i : i + 1])
    with torch.no_grad():  # a fresh UNet's last conv is not zero, but make the mask matter clearly
        m.unet.conv_in.weight[:, 1:].mul_(20)
    a = m.sample([0], 5, Conditions(masks=masks[:1]), options).images
    b = m.sample([0], 5, Conditions(masks=1 - masks[:1]), options).images
    assert np.abs(a.astype(np.int16) - b).mean() > 1


def test_a_mask_id_beyond_mask_classes_is_one_error() -> None:
    masks = torch.full((1, 1, 16, 16), 2, dtype=torch.uint8)
    with pytest.raises(
        DataError, match=r"hold mask id 2, but model.mask_classes is 2 \(ids 0..1\)"
    ):
        model().mask_channels(masks)


def test_it_trains_through_the_loop_and_resumes_bit_identically(
    pairs: Path, tmp_path: Path
) -> None:
    from suite.generative.train import GeneratorTrainer

    GeneratorTrainer(config(pairs, tmp_path / "ref")).fit()
    GeneratorTrainer(config(pairs, tmp_path / "cut", "train.max_steps=2")).fit()
    GeneratorTrainer(config(pairs, tmp_path / "cut"), resume="yes").fit()
    ref = run_state.latest_checkpoint(tmp_path / "ref" / RUN)
    cut = run_state.latest_checkpoint(tmp_path / "cut" / RUN)
    want, got = run_state.load_state(ref, 0)[0], run_state.load_state(cut, 0)[0]
    assert got["train_state"]["step"] == want["train_state"]["step"] == 4
    assert set(want["model"]) == {f"unet.{k}" for k in model().unet.state_dict()}
    for part in ("model", "ema"):
        assert want[part].keys() == got[part].keys()
        for name, tensor in want[part].items():
            if isinstance(tensor, torch.Tensor):
                assert torch.equal(got[part][name], tensor), f"{part}.{name}"
    assert (tmp_path / "ref" / RUN / "export" / "unet" / "config.json").is_file()


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (dict(masks=False), [], "has no masks: mask_ddpm trains on image+mask pairs"),
        (
            dict(ids=3, names=["bg", "gm", "wm"]),
            [],
            "has 3 mask classes (bg, gm, wm), model.mask_classes is 2",
        ),  # fmt: skip
        (dict(ids=5), [], "holds mask id 4, but model.mask_classes is 2 (ids 0..1)"),
        (dict(), ["train.hflip=true"], "move an image but not its mask"),
    ],
    ids=["no-masks", "mask-names", "mask-id", "hflip"],
)
def test_unusable_training_data_is_one_error_and_no_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: dict, extra: list[str], message: str
) -> None:
    shards = masked_set(tmp_path / "s", **make)
    out = tmp_path / "runs"
    argv = ["train", "generator", str(TINY), f"data.shards={shards}", "data.split=null",
            f"run.out_dir={out}", *extra]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "fix:" in err and "Traceback" not in err
    assert not (out / RUN / "export").exists()


# -- synmed sample ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(pairs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny family trained 4 steps on ``pairs``: its run folder (export inside)."""
    out = tmp_path_factory.mktemp("md-run")
    argv = ["train", "generator", str(TINY), f"data.shards={pairs}", "data.split=null",
            f"run.out_dir={out}"]  # fmt: skip
    assert main(argv) == 0
    return out / RUN


SAMPLE = ("--conditions-split", "all", "--sampler", "ddim", "--sampling-steps", "2",
          "--shard-size", "6", "--batch-size", "3")  # fmt: skip


@pytest.mark.ray
def test_synmed_sample_per_condition_writes_pairs_with_their_source_index(
    trained: Path, pairs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    ray_address: str,
) -> None:  # fmt: skip
    from suite.data.dataset import ShardDataset

    out = tmp_path / "pairs"
    proc = synmed_here(capsys, "sample", "--checkpoint", str(trained), "--conditions", str(pairs),
                       "--per-condition", "2", *SAMPLE, "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    made, real = ShardDataset(out), ShardDataset(pairs)
    assert len(made) == 16 and made.has_masks
    sources = made.read_column("source_index")
    assert sources.tolist() == [i // 2 for i in range(16)]
    for i in range(16):
        row = made[i]
        assert row["image"].shape == (1, 16, 16)
        assert torch.equal(row["mask"], real[int(sources[i])]["mask"])


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        (None, "synmed sample needs --conditions MASKS"),
        (dict(masks=False), "has none of the conditions this generator reads (masks)"),
        (dict(ids=3), "--conditions {set} holds mask id 2, but model.mask_classes is 2"),
    ],
    ids=["no-conditions", "no-masks", "mask-id"],
)
def test_sampling_refuses_missing_or_unfit_masks_before_any_output(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    conditions: dict | None, message: str,
) -> None:  # fmt: skip
    out = tmp_path / "out"
    args = ["--num-images", "4"]
    if conditions is not None:
        cset = masked_set(tmp_path / "c", **conditions)
        args = ["--conditions", str(cset), "--per-condition", "2"]
        message = message.format(set=cset)
    proc = synmed_here(capsys, "sample", "--checkpoint", str(trained), *args, *SAMPLE,
                       "--out", str(out))  # fmt: skip
    assert proc.returncode == 2
    assert message in proc.stderr and "fix:" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
