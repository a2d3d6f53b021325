"""What the Stable Diffusion families share, on the tiny base: the text-embedding blend of
``model.prompt_blend`` (seed 002's), drawn per image from (seed, index), and its bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.cli import main

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "configs/generator/tiny_controlnet.yaml"
PHRASES = ("Enhance contrast", "High resolution", "Clear edges")
# seed 002's blend (segmentation_sample.py): its prompt is joined to a_prompt with a bare ","
SEED_BLEND = ('model.prompt_blend=[{text: "{prompt},best quality, extremely detailed", '
              'weight: 0.045}, {text: "{phrase}", weight: 0.005}, '
              '{text: "gray, sketch", weight: 0.95}]')  # fmt: skip


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Four 16 px image+mask rows, their edge maps and a three-line phrases file."""
    from suite.data.edges import write_edge_set
    from tests.unit.data.helpers import make_shard_set

    root = tmp_path_factory.mktemp("blend")
    shards = make_shard_set(root / "s", n=4, classes=("a", "b"), size=16, masks=True)
    write_edge_set(shards, root / "edges", progress=False)
    (root / "phrases.txt").write_text("\n".join(PHRASES) + "\n\n")
    return shards, root / "edges", root / "phrases.txt"


def controlnet(tiny_sd: Path, pairs: tuple[Path, Path, Path], *extra: str):
    from suite.generative.families import build_generator
    from suite.schema import load_config

    shards, hints, _ = pairs
    config = load_config(TINY, [f"model.base={tiny_sd}", f"data.shards={shards}",
                                "data.split=null", f"model.hints={hints}", *extra])  # fmt: skip
    return build_generator(config.model)


def blended(tiny_sd: Path, pairs: tuple[Path, Path, Path], *extra: str):
    return controlnet(tiny_sd, pairs, SEED_BLEND, f"model.prompt_blend_phrases={pairs[2]}", *extra)


def test_the_blended_embedding_is_the_weighted_sum_of_the_encoder_outputs(
    tiny_sd: Path, pairs: tuple[Path, Path, Path]
) -> None:
    model = blended(tiny_sd, pairs, "model.prompt_blend_pick=cycle")
    prompts = ["Breast, Ultrasound"] * 4
    terms = model.blend_terms(prompts, 0, [0, 1, 2, 3])
    assert [row[1]["text"] for row in terms] == [PHRASES[0], PHRASES[1], PHRASES[2], PHRASES[0]]
    assert terms[0][0] == {"text": "Breast, Ultrasound,best quality, extremely detailed",
                           "weight": 0.045}  # fmt: skip
    with torch.no_grad():
        got = model.encode_blend(terms, torch.device("cpu"))

        def enc(texts: list[str]) -> torch.Tensor:
            return model.encode_prompts(texts, torch.device("cpu"))

        want = (
            0.045 * enc(["Breast, Ultrasound,best quality, extremely detailed"] * 4)
            + 0.005 * enc([PHRASES[0], PHRASES[1], PHRASES[2], PHRASES[0]])
            + 0.95 * enc(["gray, sketch"] * 4)
        )
    # computed the same way (three encoder passes, summed left to right): bit-identical
    assert torch.equal(got, want)


def test_the_blend_conditions_sampling_as_the_diffusers_pipelines_prompt_embeds_do(
    tiny_sd: Path, pairs: tuple[Path, Path, Path]
) -> None:
    from diffusers import DDIMScheduler, StableDiffusionControlNetPipeline, StableDiffusionPipeline

    from suite.generative.base import Conditions, SampleOptions, noise_generators

    model = blended(tiny_sd, pairs, "model.image_size=32", "model.channels=3",
                    "model.negative_prompt=lowres")  # fmt: skip
    hint = (np.random.default_rng(0).random((2, 1, 32, 32)) > 0.8).astype(np.uint8) * 255
    # the seed's CFG 9: the blend moves these images by up to 13 levels from the plain prompt's
    options = SampleOptions(sampler="ddim", steps=3, guidance_scale=9.0)
    ours = model.sample([0, 1], 5, Conditions(images=hint), options)
    prompts = [model.config.prompt] * 2
    with torch.no_grad():
        embeds = model.encode_blend(model.blend_terms(prompts, 5, [0, 1]), torch.device("cpu"))
    noise = torch.stack([torch.randn(model.latent_shape(), generator=g)
                         for g in noise_generators(5, [0, 1])])  # fmt: skip
    base = StableDiffusionPipeline.from_pretrained(tiny_sd, local_files_only=True)
    pipe = StableDiffusionControlNetPipeline(
        **{k: v for k, v in base.components.items() if k != "image_encoder"},
        controlnet=model.controlnet,
    )
    pipe.scheduler = DDIMScheduler(**model.scheduler_config(), clip_sample=False,
                                   set_alpha_to_one=True)  # fmt: skip
    out = pipe(prompt_embeds=embeds, negative_prompt=["lowres"] * 2, latents=noise,
               image=torch.from_numpy(hint).float().div(255), num_inference_steps=3, height=32,
               width=32, guidance_scale=9.0, output_type="np").images  # fmt: skip
    theirs = (out.transpose(0, 3, 1, 2) * 255).round().astype(np.int16)
    # one uint8 step of rounding apart at most: the pipeline decodes and clips in its own order
    assert np.abs(ours.images.astype(np.int16) - theirs).max() <= 2


def test_the_blend_changes_the_images_and_is_recorded_per_row(
    tiny_sd: Path, pairs: tuple[Path, Path, Path]
) -> None:
    from suite.generative.base import Conditions, SampleOptions

    hint = np.full((3, 1, 16, 16), 255, np.uint8)
    options = SampleOptions(sampler="ddim", steps=2, guidance_scale=3.0)
    plain = controlnet(tiny_sd, pairs)
    with torch.no_grad():  # zero convolutions start at 0: move them off so the hint is read too
        for p in plain.controlnet.parameters():
            p.add_(0.01)
    model = blended(tiny_sd, pairs)
    model.controlnet.load_state_dict(plain.controlnet.state_dict())
    a = plain.sample([0, 1, 2], 0, Conditions(images=hint), options)
    b = model.sample([0, 1, 2], 0, Conditions(images=hint), options)
    assert np.abs(a.images.astype(np.int16) - b.images).max() > 0
    assert b.prompts == a.prompts == [model.config.prompt] * 3  # the row's prompt stays
    for row, terms in zip(b.metadata, model.blend_terms(b.prompts, 0, [0, 1, 2])):
        assert row["prompt_blend"] == terms and terms[1]["text"] in PHRASES
        json.dumps(row)  # the shard writer stores metadata as JSON
    assert "prompt_blend" not in a.metadata[0]


def test_an_images_phrase_depends_on_seed_and_index_alone(
    tiny_sd: Path, pairs: tuple[Path, Path, Path]
) -> None:
    from suite.generative.base import Conditions, SampleOptions
    from suite.generative.stable_diffusion import phrase_line

    lines = [phrase_line(3, i, 50, "random") for i in range(200)]
    torch.manual_seed(123)
    np.random.seed(123)  # the global generators play no part
    assert lines == [phrase_line(3, i, 50, "random") for i in range(200)]
    assert len(set(lines)) > 40 and lines != [phrase_line(4, i, 50, "random") for i in range(200)]
    assert [phrase_line(3, i, 50, "cycle") for i in (0, 49, 50, 101)] == [0, 49, 0, 1]
    # through sampling: a batch of four and two batches of two give each index the same phrase
    model = blended(tiny_sd, pairs)
    hint = np.zeros((4, 1, 16, 16), np.uint8)
    options = SampleOptions(sampler="ddim", steps=1, guidance_scale=1.0)
    whole = model.sample([4, 5, 6, 7], 9, Conditions(images=hint), options).metadata
    split = [m for part in ([4, 5], [6, 7])
             for m in model.sample(part, 9, Conditions(images=hint[:2]), options).metadata]  # fmt: skip
    assert [m["prompt_blend"] for m in whole] == [m["prompt_blend"] for m in split]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([SEED_BLEND, "model.prompt_blend_phrases={tmp}/none.txt"], "none.txt does not exist"),
        ([SEED_BLEND, "model.prompt_blend_phrases={tmp}/empty.txt"], "empty.txt holds no phrases"),
        ([SEED_BLEND], "model.prompt_blend_phrases is not set"),
        (["model.prompt_blend_phrases={phrases}"], "no term of model.prompt_blend reads it"),
        (["model.prompt_blend=[{text: a, weight: 0}]"], "every weight of model.prompt_blend is 0"),
        (
            ["model.prompt_blend=[{text: a, weight: -0.5}]"],
            "'model.prompt_blend[0].weight' = -0.5 is out of range",
        ),
    ],  # fmt: skip
    ids=["missing-file", "empty-file", "no-file", "unused-file", "zero-weights", "negative"],
)
def test_a_bad_blend_is_one_error_and_no_run(
    tiny_sd: Path, pairs: tuple[Path, Path, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str,
) -> None:  # fmt: skip
    shards, hints, phrases = pairs
    (tmp_path / "empty.txt").write_text("\n  \n")
    out = tmp_path / "runs"
    argv = ["train", "generator", str(TINY), f"model.base={tiny_sd}", f"data.shards={shards}",
            "data.split=null", f"model.hints={hints}", f"run.out_dir={out}",
            *(e.replace("{tmp}", str(tmp_path)).replace("{phrases}", str(phrases))
              for e in extra)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_every_sd_family_reads_the_blend_and_a_lone_prompt_term_is_the_plain_prompt(
    tiny_sd: Path,
) -> None:
    from suite.generative.base import Conditions, SampleOptions
    from suite.generative.families import build_generator
    from suite.schema import load_config

    def sd_lora(*extra: str):
        config = load_config(REPO / "configs/generator/tiny_sd_lora.yaml",
                             [f"model.base={tiny_sd}", *extra])  # fmt: skip
        return build_generator(config.model)

    options = SampleOptions(sampler="ddim", steps=2, guidance_scale=3.0)
    conditions = Conditions(prompts=["a chest x-ray"] * 2)
    plain = sd_lora().sample([0, 1], 0, conditions, options).images
    # 1.0 * E(prompt) is E(prompt) exactly: the same images, bit for bit
    lone = sd_lora('model.prompt_blend=[{text: "{prompt}", weight: 1.0}]')
    assert np.array_equal(lone.sample([0, 1], 0, conditions, options).images, plain)
    mixed = sd_lora('model.prompt_blend=[{text: "{prompt}", weight: 0.5}, '
                    '{text: "gray, sketch", weight: 0.5}]')  # fmt: skip
    assert not np.array_equal(mixed.sample([0, 1], 0, conditions, options).images, plain)


def test_the_blend_and_its_phrases_file_ride_in_the_export(
    tiny_sd: Path, pairs: tuple[Path, Path, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from suite.generative.base import Conditions, SampleOptions
    from suite.generative.export import export_generator, load_generator

    monkeypatch.chdir(pairs[2].parent)  # a relative path, as a user types it
    model = controlnet(tiny_sd, pairs, SEED_BLEND, f"model.prompt_blend_phrases={pairs[2].name}")
    assert model.config.prompt_blend_phrases == str(pairs[2].resolve())
    export_generator(model, tmp_path / "export", {}, class_names=[])
    monkeypatch.chdir(tmp_path)  # a sampling worker's working directory differs
    loaded, _ = load_generator(tmp_path / "export")
    assert loaded.config.prompt_blend == model.config.prompt_blend
    hint = np.zeros((2, 1, 16, 16), np.uint8)
    options = SampleOptions(sampler="ddim", steps=1, guidance_scale=3.0)
    ours = model.eval().sample([0, 1], 2, Conditions(images=hint), options)
    theirs = loaded.sample([0, 1], 2, Conditions(images=hint), options)
    assert np.array_equal(ours.images, theirs.images)
    assert [m["prompt_blend"] for m in ours.metadata] == [
        m["prompt_blend"] for m in theirs.metadata
    ]
