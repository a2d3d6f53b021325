"""`synmed sample`: N synthetic images from a trained generator, sharded over Ray workers into HDF5.

The job is a plan (which index goes to which shard, with which label and noise seed) executed by a
Ray Data actor pool that holds one model per GPU (or per CPU slot). Each task is one whole shard: the
actor samples its indices batch by batch and writes the shard through the shard store's writer
(``.tmp``, fsync, rename). A shard therefore has exactly one writer even when Ray retries a task on
a restarted actor, and Ray Data's re-blocking between operators can never split a shard across two
writers. The driver writes the manifest once every shard exists.

Re-running the same command resumes. A worker records each shard it wrote (its manifest record,
sha256 included) in ``.records/`` right after the shard; a rerun keeps a shard only if its bytes
still hash to that record (or, once the set is complete, to the manifest), and samples any other
shard again (the same bytes: sampling is deterministic), saying which. The manifest is built from
those verified records only, never from re-hashing whatever is on disk. A folder holding another
plan's shards is refused, naming what differs.

With ``--conditions SET`` every output row is made from one row of a conditioning shard set (its
class label, mask, conditioning image or prompt: whatever the generator family declares it reads),
``--per-condition K`` rows per conditioning row; output row ``i`` comes from conditioning row
``i // K`` and carries its ``source_index`` (and its mask, where the set has masks), so image+mask
pairs stay paired. The job does not know which family it holds: it asks the generator to sample.

With ``--accept CLASSIFIER`` each actor also holds a classifier, and rows it does not recognise as
their class are drawn again with a new attempt's noise (suite/sampling/acceptance.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

import suite
from suite.artifacts.digests import sha256_file
from suite.artifacts.files import atomic_write_text, write_error
from suite.config import require_at_least
from suite.data.shards import (
    MANIFEST,
    ShardRecord,
    read_manifest,
    shard_name,
    write_manifest,
    write_shard,
)
from suite.data.transforms import sample_seed
from suite.data.writer import check_outside_inputs
from suite.errors import ConfigError, ShardError, SynmedError
from suite.sampling.acceptance import (
    Acceptor,
    AcceptSettings,
    accept_settings,
    acceptance_summary,
    check_plan,
)

PLAN_FILE = "job.json"
# each actor leaves a file "<node address>_<pid>" here (for people and fault tests); the summary
# lists them as the job's actors
WORKERS_DIR = ".workers"
# each shard's record as its writer made it ("shard-NNNNN.json"): what a resumed run trusts
RECORDS_DIR = ".records"


@dataclass(frozen=True, slots=True)
class SamplingPlan:
    """Everything that decides the images; its digest is stored in every shard."""

    checkpoint_digest: str
    num_images: int
    shard_size: int
    batch_size: int
    sampler: str
    steps: int
    seed: int
    guidance_scale: float
    class_names: tuple[str, ...]
    per_class: int | None
    class_weights: tuple[float, ...] | None
    # conditioning set (manifest digest), its split and rows, and outputs per row
    conditions_digest: str | None = None
    conditions_split: str | None = None
    condition_rows: int = 0
    per_condition: int | None = None
    # the condition kinds read from the set (the family's declaration met by the set's columns)
    condition_kinds: tuple[str, ...] = ()
    # text-to-image families: one prompt for every row (instead of the class prompts) and the
    # negative prompt of classifier-free guidance (None: the model's own)
    prompt: str | None = None
    negative_prompt: str | None = None
    # --accept: the classifier export's digest, its threshold and attempts (suite/sampling/acceptance.py)
    accept_digest: str | None = None
    min_confidence: float | None = None
    max_attempts: int | None = None
    # a saved checkpoint of the run sampled instead of its export (suite/generative/checkpoints.py)
    checkpoint_step: int | None = None

    @property
    def digest(self) -> str:
        body = asdict(self)
        # Plans without conditioning or acceptance keep the digest they had before those
        # existed, so their folders still resume.
        for key in _OPTIONAL_FIELDS:
            if not body[key]:
                del body[key]
        for key in _PROMPT_FIELDS:
            if body[key] is None:
                del body[key]
        if body["checkpoint_step"] is None:  # an export's plan keeps its digest too
            del body["checkpoint_step"]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    @property
    def conditioned(self) -> bool:
        return self.conditions_digest is not None

    @property
    def conditional(self) -> bool:
        """Whether output rows carry class labels."""
        return (
            self.per_class is not None
            or self.class_weights is not None
            or "labels" in self.condition_kinds
        )

    @property
    def accepts(self) -> bool:
        return self.accept_digest is not None

    def condition_row(self, index: np.ndarray) -> np.ndarray:
        """The conditioning row of each output index."""
        assert self.per_condition is not None
        return index // self.per_condition

    def shards(self) -> list[tuple[int, int, int]]:
        """(shard number, first index, end index) covering 0..num_images."""
        count = math.ceil(self.num_images / self.shard_size)
        return [
            (n, n * self.shard_size, min((n + 1) * self.shard_size, self.num_images))
            for n in range(count)
        ]

    def labels(self, start: int, stop: int) -> np.ndarray | None:
        return self.labels_at(np.arange(start, stop))

    def labels_at(self, index: np.ndarray) -> np.ndarray | None:
        """Class of each index: round-robin with --per-class (every prefix stays balanced), or drawn
        from --class-weights with a uniform seeded by (seed, index)."""
        if self.conditioned:
            return None  # from the conditioning rows
        if self.per_class is not None:
            return (index % len(self.class_names)).astype(np.int64)
        if self.class_weights is not None:
            cdf = np.cumsum(np.asarray(self.class_weights, dtype=np.float64))
            cdf /= cdf[-1]
            u = np.array([sample_seed(self.seed, int(i), 1) / 2**63 for i in index])
            return np.searchsorted(cdf, u, side="right").astype(np.int64)
        return None


_OPTIONAL_FIELDS = (
    "conditions_digest",
    "conditions_split",
    "condition_rows",
    "per_condition",
    "condition_kinds",
    "accept_digest",
    "min_confidence",
    "max_attempts",
)
_PROMPT_FIELDS = ("prompt", "negative_prompt")


@dataclass(frozen=True, slots=True)
class ConditionSource:
    """A conditioning shard set as the plan sees it."""

    digest: str
    split: str | None
    rows: int
    kinds: tuple[str, ...]


def make_plan(
    checkpoint_digest: str,
    class_names: list[str],
    num_classes: int,
    *,
    samplers: tuple[str, ...],
    conditions: ConditionSource | None = None,
    per_condition: int | None = None,
    num_images: int | None,
    per_class: int | None,
    class_weights: list[float] | None,
    shard_size: int,
    batch_size: int,
    sampler: str,
    steps: int,
    seed: int,
    guidance_scale: float,
    prompt: str | None = None,
    negative_prompt: str | None = None,
    accept: AcceptSettings | None = None,
) -> SamplingPlan:
    if sampler not in samplers:
        raise ConfigError(
            f"sampler {sampler!r} is not one this generator declares",
            f"use one of: {', '.join(samplers)}",
        )
    if conditions is not None:
        if per_class is not None or class_weights is not None:
            raise ConfigError(
                "--conditions gives each row its condition; --per-class / --class-weights cannot "
                "be combined with it",
                "drop --per-class / --class-weights",
            )
        k = per_condition if per_condition is not None else 1
        if k < 1:
            raise ConfigError("--per-condition must be at least 1", "pass --per-condition K >= 1")
        if num_images is not None and num_images != k * conditions.rows:
            raise ConfigError(
                f"--num-images {num_images} differs from --per-condition {k} x "
                f"{conditions.rows} conditioning rows",
                "give one of them",
            )
        num_images = k * conditions.rows
        per_condition = k
    elif per_condition is not None:
        raise ConfigError("--per-condition needs --conditions SET", "add --conditions SET")
    if (per_class is not None or class_weights is not None) and not num_classes:
        raise ConfigError(
            "--per-class / --class-weights need a class-conditional generator",
            "train one with model.kind: ddpm_diffusers and model.num_classes > 0, or drop the option",
        )
    names = class_names or [str(i) for i in range(num_classes)]
    if per_class is not None:
        if num_images is not None and num_images != per_class * num_classes:
            raise ConfigError(
                f"--num-images {num_images} differs from --per-class {per_class} x {num_classes} classes",
                "give one of them",
            )
        num_images = per_class * num_classes
    if class_weights is not None and len(class_weights) != num_classes:
        raise ConfigError(
            f"--class-weights has {len(class_weights)} values, the generator has {num_classes} classes",
            f"give one weight per class ({', '.join(names)})",
        )
    if num_images is None or num_images < 1:
        raise ConfigError(
            "--num-images must be at least 1", "pass --num-images N (or --per-class N)"
        )
    if shard_size < 1 or batch_size < 1:
        raise ConfigError("--shard-size and --batch-size must be at least 1", "pass positive sizes")
    return SamplingPlan(
        checkpoint_digest=checkpoint_digest,
        num_images=num_images,
        shard_size=shard_size,
        batch_size=batch_size,
        sampler=sampler,
        steps=steps,
        seed=seed,
        guidance_scale=guidance_scale,
        class_names=tuple(names) if num_classes else (),
        per_class=per_class,
        class_weights=tuple(class_weights) if class_weights is not None else None,
        conditions_digest=conditions.digest if conditions else None,
        conditions_split=conditions.split if conditions else None,
        condition_rows=conditions.rows if conditions else 0,
        per_condition=per_condition,
        condition_kinds=conditions.kinds if conditions else (),
        prompt=prompt,
        negative_prompt=negative_prompt,
        accept_digest=accept.digest if accept else None,
        min_confidence=accept.min_confidence if accept else None,
        max_attempts=accept.max_attempts if accept else None,
    )


def plan_from_dict(body: dict[str, Any]) -> SamplingPlan:
    """A plan read back from job.json (JSON lists back to tuples)."""
    tuples = ("class_names", "class_weights", "condition_kinds")
    return SamplingPlan(
        **{k: tuple(v) if k in tuples and v is not None else v for k, v in body.items()}
    )


# -- the folder: plan, resume, refusal --------------------------------------------------------------


@dataclass(slots=True)
class Resume:
    """What a (re)run finds in ``out``: verified shards to keep, shards to (re)write, and why."""

    kept: dict[str, ShardRecord]  # by file name
    todo: list[tuple[int, int, int]]
    redo: list[str]  # one line per shard on disk that failed verification
    # the manifest listed every shard and each matched it: the set is whole as it stands
    complete: bool = False


def prepare_output(out: Path, plan: SamplingPlan, checkpoint: str) -> Resume:
    """Create or check ``out``; verify the shards already there."""
    out.mkdir(parents=True, exist_ok=True)
    plan_path = out / PLAN_FILE
    if plan_path.is_file():
        old = json.loads(plan_path.read_text())["plan"]
        new = asdict(plan)
        # a job.json from before conditioning existed lacks those keys: they had their defaults
        defaults = {f.name: f.default for f in fields(SamplingPlan)}
        differ = sorted(k for k in new if _norm(old.get(k, defaults[k])) != _norm(new[k]))
        if differ:
            raise ShardError(
                f"{out} holds shards of another sampling job: {', '.join(f'{k} {old.get(k)!r} != {new[k]!r}' for k in differ)}",
                "choose a new --out, or rerun with the arguments of the job that wrote it",
            )
    elif any(p.name not in (WORKERS_DIR, RECORDS_DIR) for p in out.iterdir()):
        raise ShardError(
            f"{out} is not empty and was not written by synmed sample", "choose a new --out"
        )
    else:
        body = {"plan": asdict(plan), "plan_digest": plan.digest, "checkpoint": checkpoint}
        atomic_write_text(plan_path, json.dumps(body, indent=1))
    return verify_existing(out, plan)


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def verify_existing(out: Path, plan: SamplingPlan) -> Resume:
    """Keep a shard only if its bytes hash to what its writer recorded: the manifest's record once
    the set is complete, else the worker's ``.records/`` entry. Anything else is sampled again."""
    trusted = _manifest_records(out, plan)
    kept: dict[str, ShardRecord] = {}
    todo: list[tuple[int, int, int]] = []
    redo: list[str] = []
    for number, start, stop in plan.shards():
        path = out / shard_name(number)
        rec = trusted.get(path.name) if trusted is not None else read_record(out, number, plan)
        problem = None
        if not path.is_file():
            if trusted is not None:
                problem = "is listed in the manifest but missing"
        elif rec is None:
            problem = "has no record of its writer (written by an interrupted worker?)"
        elif rec.count != stop - start:
            problem = f"is recorded with {rec.count} images, the plan has {stop - start}"
        elif sha256_file(path) != rec.sha256:
            problem = "differs from the sha256 recorded when it was written"
        if rec is not None and problem is None:
            kept[path.name] = rec
            continue
        todo.append((number, start, stop))
        if problem:
            redo.append(f"synmed sample: {path} {problem}; sampling it again")
    return Resume(kept, todo, redo, complete=trusted is not None and not todo)


def _manifest_records(out: Path, plan: SamplingPlan) -> dict[str, ShardRecord] | None:
    """The manifest's records when ``out`` holds this plan's complete set, else None."""
    if not (out / MANIFEST).is_file():
        return None
    try:
        manifest = read_manifest(out)
    except ShardError:  # a damaged manifest: fall back to the workers' records
        return None
    if manifest.attrs.get("job_digest") != plan.digest:
        return None
    return {rec.file: rec for rec in manifest.shards}


def record_path(out: Path, number: int) -> Path:
    return out / RECORDS_DIR / shard_name(number).replace(".h5", ".json")


def read_record(out: Path, number: int, plan: SamplingPlan) -> ShardRecord | None:
    """The record the writer of shard ``number`` left for this plan; None if absent or unreadable."""
    try:
        body = json.loads(record_path(out, number).read_text())
        if body["plan_digest"] != plan.digest:
            return None
        rec = ShardRecord(**body["record"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rec if rec.file == shard_name(number) else None


def write_sampled_shard(
    out: Path, number: int, arrays: dict[str, np.ndarray], attrs: dict[str, Any], plan_digest: str
) -> ShardRecord:
    """Write one shard, then its record. A failed write is one error naming the file (the
    writers remove their ``.tmp``); a rerun keeps the shards already written."""
    rec = write_shard(out, number, arrays, attrs)
    record = record_path(out, number)
    try:
        record.parent.mkdir(exist_ok=True)
    except OSError as err:
        raise write_error(record.parent, err) from None
    body = {"plan_digest": plan_digest, "record": asdict(rec)}
    atomic_write_text(record, json.dumps(body, indent=1))
    return rec


def shard_attrs(plan: SamplingPlan, checkpoint: str) -> dict[str, Any]:
    return {
        "source": "synthetic",
        "generator_checkpoint": checkpoint,
        "generator_digest": plan.checkpoint_digest,
        "sampler": plan.sampler,
        "sampling_steps": plan.steps,
        "base_seed": plan.seed,
        "guidance_scale": plan.guidance_scale,
        "class_names": list(plan.class_names),
        "label_kind": "multiclass" if plan.conditional else "none",
        "job_digest": plan.digest,
        **({"conditions_digest": plan.conditions_digest} if plan.conditioned else {}),
        **(
            {
                "accept_classifier_digest": plan.accept_digest,
                "min_confidence": plan.min_confidence,
                "max_attempts": plan.max_attempts,
            }
            if plan.accepts
            else {}
        ),
        **({"checkpoint_step": plan.checkpoint_step} if plan.checkpoint_step is not None else {}),
        "synmed_version": suite.__version__,
    }


# -- the Ray actor ----------------------------------------------------------------------------------


class ShardSampler:
    """A Ray Data actor: loads the generator once, then samples and writes one shard per call."""

    def __init__(
        self,
        checkpoint: str,
        plan: dict[str, Any],
        out: str,
        conditions: str | None = None,
        accept: str | None = None,
    ) -> None:
        import ray

        self.plan = plan_from_dict(plan)
        self.out = Path(out)
        self.checkpoint = checkpoint
        self.pid = os.getpid()
        self.node = ray.util.get_node_ip_address()
        # a bad input met here goes back as each shard's error row (see ray_runtime.error_text)
        self.failure: SynmedError | None = None
        try:
            self._load(conditions, accept)
        except SynmedError as err:
            self.failure = err
        (self.out / WORKERS_DIR).mkdir(exist_ok=True)
        (self.out / WORKERS_DIR / f"{self.node}_{self.pid}").write_text(str(time.time()))

    def _load(self, conditions: str | None, accept: str | None) -> None:
        import torch

        from suite.generative.checkpoints import load_sampling_generator

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model, digest = load_sampling_generator(
            Path(self.checkpoint), self.plan.checkpoint_step
        )
        if digest != self.plan.checkpoint_digest:
            raise ShardError(
                f"{self.checkpoint} changed while sampling (digest differs)", "rerun the job"
            )
        self.model.to(self.device).eval()
        self.conditions = (
            ConditionReader(Path(conditions), self.plan) if conditions is not None else None
        )
        # the classifier of --accept, once per actor, on the actor's device
        self.acceptor = Acceptor(Path(accept), self.plan, self.device) if accept else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from suite.launch.ray_runtime import error_text

        records, errors, started, finished = [], [], [], []
        for number, start, stop in zip(batch["shard"], batch["start"], batch["stop"]):
            started.append(time.time())
            try:
                if self.failure is not None:
                    raise self.failure
                arrays = sample_rows(self.model, self.plan, int(start), int(stop),
                                     self.conditions, self.device, self.acceptor)  # fmt: skip
                rec = write_sampled_shard(self.out, int(number), arrays,
                                          shard_attrs(self.plan, self.checkpoint), self.plan.digest)  # fmt: skip
                records.append(json.dumps(asdict(rec)))
                errors.append("")
            except SynmedError as err:
                records.append("")
                errors.append(error_text(err))
            finished.append(time.time())
        return {
            "record": np.array(records, dtype=object),
            "error": np.array(errors, dtype=object),
            "worker": np.full(len(records), f"{self.node}/{self.pid}", dtype=object),
            "started": np.array(started),
            "finished": np.array(finished),
        }


class ConditionReader:
    """The rows of a conditioning shard set that a plan reads, as :class:`Conditions`."""

    def __init__(self, directory: Path, plan: SamplingPlan) -> None:
        from suite.data.dataset import ShardDataset

        self.plan = plan
        # the plan holds the manifest's digest, the manifest each shard's: check both here, where
        # the rows are read (an actor may start long after the driver checked, or on another node)
        self.data = ShardDataset(directory, split=plan.conditions_split, verify="sha256")
        if sha256_file(directory / MANIFEST) != plan.conditions_digest:
            raise ShardError(
                f"{directory / MANIFEST} changed since the job was planned",
                "sample into a new --out, or restore the conditioning set",
            )
        # a sampled set's prompts, read once: a text-to-image family draws each row from its text
        self.prompts = (
            self.data.read_column("prompts") if "prompts" in plan.condition_kinds else None
        )
        if len(self.data) != plan.condition_rows:
            raise ShardError(
                f"{directory} has {len(self.data)} rows for split {plan.conditions_split}, the "
                f"job was planned on {plan.condition_rows}",
                "sample again into a new --out",
            )

    def rows(self, rows: np.ndarray) -> Any:
        from suite.generative.base import Conditions

        # K consecutive outputs share a row: read each row once
        unique, inverse = np.unique(rows, return_inverse=True)
        read = [self.data[int(r)] for r in unique]
        samples = [read[i] for i in inverse]
        kinds = self.plan.condition_kinds
        return Conditions(
            labels=np.array([int(s["label"]) for s in samples], dtype=np.int64)
            if "labels" in kinds
            else None,
            masks=np.stack([s["mask"].numpy() for s in samples]) if "masks" in kinds else None,
            images=np.stack([s["image"].numpy() for s in samples]) if "images" in kinds else None,
            prompts=[str(self.prompts[int(r)]) for r in rows] if self.prompts is not None else None,
            source_index=np.array([s["index"] for s in samples], dtype=np.int64),
        )


def sample_rows(
    model: Any,
    plan: SamplingPlan,
    start: int,
    stop: int,
    conditions: ConditionReader | None,
    device: Any,
    acceptor: Acceptor | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of output rows ``start..stop``, sampled ``plan.batch_size`` at a time; with an
    acceptor, rejected rows are drawn again (suite/sampling/acceptance.py)."""
    index = np.arange(start, stop, dtype=np.int64)
    arrays = draw_rows(model, plan, index, conditions, device)
    if acceptor is None:
        return arrays
    return acceptor.filter(
        arrays, lambda rows, attempt: draw_rows(model, plan, rows, conditions, device, attempt)
    )


def draw_rows(
    model: Any,
    plan: SamplingPlan,
    index: np.ndarray,
    conditions: ConditionReader | None,
    device: Any,
    attempt: int = 0,
) -> dict[str, np.ndarray]:
    """Attempt ``attempt`` of the output rows ``index``, ``plan.batch_size`` at a time."""
    from suite.generative.base import Conditions, SampleOptions

    options = SampleOptions(
        sampler=plan.sampler,
        steps=plan.steps,
        guidance_scale=plan.guidance_scale,
        negative_prompt=plan.negative_prompt,
        attempt=attempt,
    )
    parts: dict[str, list[Any]] = {}
    for s in range(0, len(index), plan.batch_size):
        batch = index[s : s + plan.batch_size]
        labels = plan.labels_at(batch)
        if conditions is not None:
            cond = conditions.rows(plan.condition_row(batch))
        elif labels is not None:
            cond = Conditions(labels=labels)
        else:
            cond = None
        if plan.prompt is not None:
            cond = cond or Conditions()
            cond.prompts = [plan.prompt] * len(batch)
        out = model.sample([int(i) for i in batch], plan.seed, cond, options, device)
        parts.setdefault("images", []).append(out.images)
        if out.labels is not None and plan.conditional:
            parts.setdefault("labels", []).append(np.asarray(out.labels, dtype=np.int64))
        if out.masks is not None:
            parts.setdefault("masks", []).append(out.masks)
        if out.prompts is not None:
            parts.setdefault("prompts", []).append(np.asarray(out.prompts, dtype=object))
        if out.metadata is not None:
            rows = [json.dumps(m, sort_keys=True) for m in out.metadata]
            parts.setdefault("metadata", []).append(np.asarray(rows, dtype=object))
        if cond is not None and cond.source_index is not None:
            parts.setdefault("source_index", []).append(cond.source_index)
    images = np.concatenate(parts.pop("images"))
    return {"images": images, "index": index, **{k: np.concatenate(v) for k, v in parts.items()}}


# -- the driver ---------------------------------------------------------------------------------------


def run_sampling(
    checkpoint: Path,
    out: Path,
    *,
    num_images: int | None,
    per_class: int | None = None,
    class_weights: list[float] | None = None,
    shard_size: int = 1000,
    batch_size: int = 32,
    sampler: str | None = None,
    steps: int = 1000,
    seed: int = 0,
    guidance_scale: float | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    conditions: Path | None = None,
    conditions_split: str | None = "train",
    per_condition: int | None = None,
    prompt: str | None = None,
    negative_prompt: str | None = None,
    accept: Path | None = None,
    min_confidence: float | None = None,
    max_attempts: int | None = None,
    checkpoint_step: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) a sampling job; returns its summary (also written as sample_summary.json).
    With ``accept`` (a classifier export) rows are kept or redrawn by suite/sampling/acceptance.py;
    ``checkpoint_step`` samples that saved checkpoint of the run ``checkpoint``, not its export."""
    from suite.generative.base import SampleOptions
    from suite.generative.checkpoints import load_sampling_generator
    from suite.launch.ray_runtime import (
        actor_resources,
        raise_carried,
        ray_session,
        unwrap_synmed_errors,
    )

    # before the model loads, Ray starts or --out is touched
    require_at_least(
        {"--workers": workers, "--shard-size": shard_size, "--batch-size": batch_size,
         "--sampling-steps": steps, "--num-images": num_images, "--per-class": per_class,
         "--per-condition": per_condition}
    )  # fmt: skip
    check_outside_inputs(out, (checkpoint, conditions, accept))
    accepting = accept_settings(accept, min_confidence, max_attempts)
    model, digest = load_sampling_generator(checkpoint, checkpoint_step)
    sampler = sampler or model.samplers[0]  # the family's first: "ddpm" for DDPMs, "gan" for GANs
    if (prompt is not None or negative_prompt is not None) and "prompts" not in model.conditions:
        flag = "--prompt" if prompt is not None else "--negative-prompt"
        raise ConfigError(
            f"{flag}: the {model.config.kind} generator at {checkpoint} does not read prompts",
            f"drop {flag}; it is for text-to-image families (sd_lora, sd_dreambooth)",
        )
    source = condition_source(model, conditions, conditions_split) if conditions else None
    model.check_conditions(conditions, conditions_split)
    checkpoint_str = str(Path(checkpoint).resolve())
    guidance = (
        guidance_scale
        if guidance_scale is not None
        else float(getattr(model.config, "guidance_scale", 1.0))
    )
    plan = make_plan(
        digest, model.class_names, model.num_classes, samplers=model.samplers, conditions=source,
        per_condition=per_condition, num_images=num_images, per_class=per_class,
        class_weights=class_weights, shard_size=shard_size, batch_size=batch_size, sampler=sampler,
        steps=steps, seed=seed, guidance_scale=guidance, prompt=prompt,
        negative_prompt=negative_prompt, accept=accepting[0] if accepting else None,
    )  # fmt: skip
    if accept is not None and accepting is not None:
        check_plan(accept, plan.class_names, accepting[1], conditional=plan.conditional,
                   num_classes=model.num_classes)  # fmt: skip
    plan = replace(plan, checkpoint_step=checkpoint_step)
    # a bad step count fails here, before Ray starts
    model.check_sampling(SampleOptions(sampler=sampler, steps=steps, guidance_scale=guidance))
    del model
    resume = prepare_output(out, plan, checkpoint_str)
    todo = resume.todo
    _clean_workers(out)  # the actors of an earlier, interrupted run
    for line in resume.redo:
        print(line)
    done_before = len(resume.kept)
    if done_before and todo:
        print(
            f"synmed sample: {done_before} of {len(plan.shards())} shards already complete; sampling the rest"
        )
    t0 = time.time()
    per_worker: dict[str, int] = {}  # "node address/pid" -> images
    window = (float("inf"), float("-inf"))  # first shard started .. last shard written
    written = dict(resume.kept)  # verified shards, then this run's as their writers recorded them
    failures: list[str] = []
    if todo:
        with ray_session(ray_address) as ray:
            from ray.data import ActorPoolStrategy

            items = [{"shard": n, "start": s, "stop": e} for n, s, e in todo]
            ds = ray.data.from_items(items, override_num_blocks=len(items))
            results = ds.map_batches(
                ShardSampler,
                fn_constructor_kwargs={
                    "checkpoint": checkpoint_str,
                    "plan": asdict(plan),
                    "out": str(out),
                    "conditions": str(Path(conditions).resolve()) if conditions else None,
                    "accept": str(Path(accept).resolve()) if accept else None,
                },
                batch_size=1,
                compute=ActorPoolStrategy(size=min(workers, len(items))),
                **actor_resources(ray, workers),
            )
            with unwrap_synmed_errors():
                for row in results.iter_rows():
                    if row["error"]:  # the other shards still finish: a rerun keeps them
                        failures.append(row["error"])
                        continue
                    record = ShardRecord(**json.loads(row["record"]))
                    written[record.file] = record
                    count = record.count
                    per_worker[row["worker"]] = per_worker.get(row["worker"], 0) + count
                    window = (min(window[0], row["started"]), max(window[1], row["finished"]))
    if failures:
        _clean_workers(out)
        raise_carried(failures[0], also=len(failures) - 1)
    seconds = time.time() - t0
    missing = [shard_name(n) for n, _, _ in plan.shards() if shard_name(n) not in written]
    if missing:  # Ray lost results without an error: never write a manifest over a gap
        raise ShardError(
            f"{out}: no record came back for {', '.join(missing[:3])}", "rerun the same command"
        )
    records = [written[shard_name(n)] for n, _, _ in plan.shards()]
    # a whole set keeps its manifest file as it is: its sha256 keys caches and conditioned plans
    if not resume.complete:
        write_manifest(out, records, shard_attrs(plan, checkpoint_str))
    _clean_records(out)  # the manifest now holds them
    actors = _clean_workers(out)
    sampled = sum(per_worker.values())
    summary = {
        "out": str(out),
        "images": plan.num_images,
        "sampled_this_run": sampled,
        "shards": len(records),
        "sampler": plan.sampler,
        "sampling_steps": plan.steps,
        "guidance_scale": plan.guidance_scale,
        "prompt": plan.prompt,
        "negative_prompt": plan.negative_prompt,
        "seed": plan.seed,
        "workers": workers,
        "images_per_worker": per_worker,
        "images_per_node": _per_node(per_worker),
        "actors": actors,  # "node address/pid" of every actor started, busy or not
        "wall_seconds": seconds,
        "images_per_s": sampled / seconds if seconds > 0 and sampled else None,
        # Without Ray's and the actors' start-up: from the first shard begun to the last written.
        "sampling_seconds": window[1] - window[0] if sampled else None,
        "steady_images_per_s": sampled / (window[1] - window[0]) if sampled else None,
        "checkpoint": checkpoint_str,
        "checkpoint_digest": digest,
        "checkpoint_step": checkpoint_step,
        "conditions": str(Path(conditions).resolve()) if conditions else None,
        "per_condition": plan.per_condition,
        "accept": str(Path(accept).resolve()) if accept else None,
        **({"acceptance": acceptance_summary(out, plan)} if plan.accepts else {}),
    }
    atomic_write_text(out / "sample_summary.json", json.dumps(summary, indent=1))
    try:
        _grid(out)
    except OSError as err:
        (out / "samples.png").unlink(missing_ok=True)  # a partial image
        raise write_error(out / "samples.png", err) from None
    return summary


def condition_source(model: Any, conditions: Path, split: str | None) -> ConditionSource:
    """Check a conditioning set against what the generator reads (before Ray starts): every
    condition kind the family declares must be a column of the set."""
    from suite.data.dataset import ShardDataset

    declared = tuple(model.conditions)
    if not declared:
        raise ConfigError(
            f"this {type(model).__name__} generator reads no conditions",
            "drop --conditions, or train a conditioned generator",
        )
    data = ShardDataset(conditions, split=split, verify="sha256")
    if len(data) == 0:
        raise ShardError(
            f"{conditions} has no rows for split {split}", "pick another --conditions-split"
        )
    have = {
        "labels": data.label_kind == "multiclass",
        "masks": data.has_masks,
        "images": True,
        "prompts": data.read_column("prompts") is not None,
    }
    # a generator without classes reads no labels, even where its family can (a ControlNet)
    kinds = tuple(
        k for k in declared if have.get(k, False) and (k != "labels" or model.num_classes)
    )
    if not kinds:
        raise ShardError(
            f"{conditions} has none of the conditions this generator reads ({', '.join(declared)})",
            "pass a set with those columns (e.g. a labelled or masked set)",
        )
    if "labels" in kinds and len(data.class_names) != model.num_classes:
        raise ShardError(
            f"{conditions} has {len(data.class_names)} classes, the generator {model.num_classes}",
            "condition on a set with the generator's classes",
        )
    digest = sha256_file(Path(conditions) / MANIFEST)
    return ConditionSource(digest=digest, split=split, rows=len(data), kinds=kinds)


def _per_node(per_worker: dict[str, int]) -> dict[str, int]:
    nodes: dict[str, int] = {}
    for worker, count in per_worker.items():
        node = worker.rsplit("/", 1)[0]
        nodes[node] = nodes.get(node, 0) + count
    return nodes


def _clean_records(out: Path) -> None:
    folder = out / RECORDS_DIR
    if folder.is_dir():
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


def _clean_workers(out: Path) -> list[str]:
    """Remove the actors' files; return who they were, as "node address/pid"."""
    folder = out / WORKERS_DIR
    actors = []
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            actors.append(p.name.replace("_", "/", 1))
            p.unlink()
        folder.rmdir()
    return actors


def _grid(out: Path, n: int = 64) -> None:
    import torch

    from suite.data.dataset import ShardDataset
    from suite.train.monitor import save_grid

    data = ShardDataset(out, verify="none")  # every shard verified or written by this run
    images = torch.stack([data[i]["image"] for i in range(min(n, len(data)))]).float() / 255
    save_grid(images, out / "samples.png")
