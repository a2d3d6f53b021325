"""Fault injection at every stage: SIGKILL at seeded random moments, then the same command again;
and every writer under a file-size limit (``ulimit -f``, standing in for a full disk).

Each stage runs once uninterrupted (the reference, whose wall time is the window the kill
moments are drawn from). Then the stage's command is started ``SYNMED_FAULT_TRIALS`` times (default
3) in one folder and its process session SIGKILLed at a moment drawn from
``random.Random(f"{SYNMED_FAULT_SEED}:{stage}")``; after every kill a reader must see the old or
the complete output or a clear "unfinished" error, never a partial one. Each start is the rerun of
the previous kill (so later trials kill resumes); a last rerun must exit 0 and give what the
reference gave: bit-identical shards, tensors and results (JSON minus timestamps and timings).

The Ray stages join the session's local Ray (``--ray-address``): a killed driver on a running
cluster is how they fail under SLURM, and no Ray start per run keeps the module at ~4 minutes.
For the same reason the full-disk runs hit their limit in the command's own writes, not in Ray's:
Ray Data's driver log goes to a null handler (Ray's own logs and object store need files far larger
than any limit that makes a 16 px shard fail), and byte-code writes are off.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from suite.data.shards import Manifest, read_manifest
from suite.data.verify import verify_shard_set
from suite.errors import ShardError
from suite.train import run_state
from tests.integration.helpers import ENV, REPO, kill_session
from tests.unit.data.helpers import make_class_folders

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]

TRIALS = int(os.environ.get("SYNMED_FAULT_TRIALS", "3"))
SEED = int(os.environ.get("SYNMED_FAULT_SEED", "13"))
LUCID = str(REPO / "configs" / "generator" / "tiny_lucidrains.yaml")
SIMCLR = str(REPO / "configs" / "ssl" / "tiny_simclr.yaml")
QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
CLASSIFY = str(REPO / "configs" / "evaluate" / "classify_fashion_mnist.yaml")
# Keys whose values differ between two equal runs: wall clocks, rates, process ids, and what a
# resumed run did itself rather than what it produced.
VOLATILE = re.compile(
    r"created|started|finished|seconds|elapsed|time|timing|_s$|actors|per_worker|this_run|resumed"
)


# -- running, killing, timing -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    quiet = tmp_path_factory.mktemp("ray-data-log") / "logging.yaml"
    quiet.write_text(
        "version: 1\ndisable_existing_loggers: false\n"
        "handlers: {null: {class: logging.NullHandler}}\n"
        "loggers: {ray.data: {level: WARNING, handlers: [null], propagate: false}}\n"
    )
    return {**ENV, "PYTHONDONTWRITEBYTECODE": "1", "RAY_DATA_LOGGING_CONFIG": str(quiet)}


def cli(env: dict[str, str], args: list[str], limit_kb: int | None = None) -> list[str]:
    """The command line of ``synmed ARGS``, under ``ulimit -f limit_kb`` if given."""
    cmd = [sys.executable, "-m", "suite", *args]
    if limit_kb is None:
        return cmd
    return ["bash", "-c", f'ulimit -f {limit_kb}; exec "$@"', "bash", *cmd]


def synmed(env: dict[str, str], args: list[str], limit_kb: int | None = None):
    proc = subprocess.run(cli(env, args, limit_kb), capture_output=True, text=True, timeout=600,
                          env=env)  # fmt: skip
    return proc


def timed(env: dict[str, str], args: list[str]) -> float:
    """Run ``synmed ARGS`` to the end (it must succeed) and return its wall time."""
    start = time.monotonic()
    proc = synmed(env, args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return time.monotonic() - start


def run_and_kill(env: dict[str, str], args: list[str], at: float, log: Path) -> int | None:
    """Start ``synmed ARGS`` in a session of its own and SIGKILL the session ``at`` s later.
    Returns None when killed, else the exit status of a run that ended first."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cli(env, args), env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            return proc.wait(timeout=at)
        except subprocess.TimeoutExpired:
            kill_session(proc.pid)
            proc.wait()
            return None


@dataclass
class Trials:
    killed: int
    finished: int
    moments: list[float]


def kill_trials(
    env: dict[str, str],
    stage: str,
    args: list[str],
    window: float,
    check: Callable[[], None],
    logs: Path,
) -> Trials:
    """TRIALS kills of ``synmed ARGS`` at seeded moments in [0, window), ``check`` after each, then
    a last rerun that must succeed."""
    rng = random.Random(f"{SEED}:{stage}")
    logs.mkdir(parents=True, exist_ok=True)
    trials = Trials(0, 0, [])
    for trial in range(TRIALS):
        at = round(rng.uniform(0.0, window), 2)
        trials.moments.append(at)
        rc = run_and_kill(env, args, at, logs / f"trial-{trial}.log")
        if rc is None:
            trials.killed += 1
        else:
            trials.finished += 1
            text = (logs / f"trial-{trial}.log").read_text()[-3000:]
            assert rc == 0, f"{stage} trial {trial} (kill at {at} s) exited {rc}:\n{text}"
        check()
    final = synmed(env, args)
    assert final.returncode == 0, (
        f"{stage}: the rerun after kills at {trials.moments} s failed:\n{final.stderr[-3000:]}"
    )
    print(f"{stage}: window {window:.1f} s, kills at {trials.moments} s, {trials.killed} killed")
    return trials


# -- what a reader sees -----------------------------------------------------------------------------


def visible_set(path: Path) -> Manifest | None:
    """None where a reader is refused (ShardError: not there, unfinished); else the manifest,
    every shard of which must be present and verify."""
    try:
        manifest = read_manifest(path)
    except ShardError:
        return None
    try:
        verify_shard_set(path)
    except ShardError as err:
        pytest.fail(f"{path}: a manifest that does not verify is visible after a kill: {err}")
    return manifest


def leftovers(*roots: Path) -> list[Path]:
    """Staging folders and temporary files anywhere under ``roots``."""
    found: list[Path] = []
    for root in roots:
        if root.is_dir():
            found += [p for p in root.rglob("*") if ".staging-" in p.name or ".tmp" in p.name]
    return sorted(found)


def normalized(path: Path, root: Path) -> object:
    """A JSON file with ``root`` replaced by ROOT and volatile keys dropped."""
    return _strip(json.loads(path.read_text().replace(str(root), "ROOT")))


def _strip(value: object) -> object:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def shard_arrays(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every dataset of every shard the manifest lists."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for rec in read_manifest(path).shards:
        with h5py.File(path / rec.file, "r") as h5:
            out[rec.file] = {key: h5[key][()] for key in h5}
    return out


def assert_same_sets(got: Path, want: Path) -> None:
    a, b = shard_arrays(got), shard_arrays(want)
    assert a.keys() == b.keys()
    for name in b:
        assert a[name].keys() == b[name].keys(), name
        for key in b[name]:
            assert np.array_equal(a[name][key], b[name][key]), f"{got}/{name}:{key}"


def assert_same_tensors(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys(), what
    for name, tensor in want.items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(got[name], tensor), f"{what}.{name}"


def assert_same_run_state(got: Path, want: Path, export_file: str) -> None:
    """Final checkpoint (model, EMA where there is one) and export of two training runs."""
    a, _ = run_state.load_state(run_state.latest_checkpoint(got), rank=0)
    b, _ = run_state.load_state(run_state.latest_checkpoint(want), rank=0)
    for part in ("model", "ema"):
        if part in b:
            assert_same_tensors(a[part], b[part], part)
    assert_same_tensors(load_file(got / "export" / export_file),
                        load_file(want / "export" / export_file), "export")  # fmt: skip
    steps = [json.loads(line)["step"] for line in (got / "metrics.jsonl").read_text().splitlines()
             if "step" in json.loads(line)]  # fmt: skip
    ref = [json.loads(line)["step"] for line in (want / "metrics.jsonl").read_text().splitlines()
           if "step" in json.loads(line)]  # fmt: skip
    assert steps == ref  # every step logged once: none lost, none repeated


def visible_run(run_dir: Path) -> None:
    """Every checkpoint a resume could pick is whole; an export is whole or absent."""
    for checkpoint in run_state.list_checkpoints(run_dir):
        run_state.verify_checkpoint(checkpoint)
    meta = run_dir / "export" / "synmed-export.json"
    if meta.exists():
        body = json.loads(meta.read_text())
        for name in body.get("files", {}):
            assert (run_dir / "export" / name).is_file(), f"export lists {name}, which is missing"
    summary = run_dir / "summary.json"
    if summary.exists():
        json.loads(summary.read_text())


def assert_full_disk(proc: subprocess.CompletedProcess[str], out: Path) -> None:
    """Exit 2, one message naming a path beside or under ``out``, no traceback, nothing left.
    Every broken promise is listed, not only the first."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    problems = []
    if proc.returncode != 2:
        problems.append(f"exit status {proc.returncode}, not 2")
    if "Traceback" in proc.stderr:
        last = [line for line in proc.stderr.splitlines() if line.strip()][-1:]
        problems.append(f"a traceback ending {last}")
    if len(errors) != 1 or str(out.parent) not in errors[0]:
        problems.append(f"not one error line naming a path under {out.parent}: {errors}")
    left = leftovers(out.parent)
    if left:
        problems.append(f"left behind: {[str(p.relative_to(out.parent)) for p in left]}")
    assert not problems, "\n".join(problems) + "\n--- stderr:\n" + proc.stderr[-2000:]


# -- shared inputs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def source(root: Path) -> Path:
    """32 images of 16 px in two class folders."""
    return make_class_folders(root / "src", per_class=16, size=(16, 16))


def ingest_args(source: Path, out: Path, *extra: str) -> list[str]:
    return ["data", "ingest", str(source), "--out", str(out), "--image-size", "16",
            "--shard-size", "4", "--quiet", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def real(env: dict[str, str], root: Path, source: Path) -> Path:
    out = root / "real"
    timed(env, ingest_args(source, out))
    return out


@pytest.fixture(scope="module")
def address(ray_local) -> str:
    return ray_local.get_runtime_context().gcs_address


# -- ingest -----------------------------------------------------------------------------------------


def test_ingest_killed_leaves_nothing_half_written(
    env: dict[str, str], root: Path, source: Path, real: Path
) -> None:
    base = root / "ingest-kill"
    window = timed(env, ingest_args(source, base / "ref"))
    rng = random.Random(f"{SEED}:ingest")
    for trial in range(TRIALS):
        out = base / f"trial-{trial}"
        at = rng.uniform(0.0, window)
        rc = run_and_kill(env, ingest_args(source, out), at, base / f"trial-{trial}.log")
        assert rc in (None, 0), (base / f"trial-{trial}.log").read_text()
        if visible_set(out) is None:  # unfinished: the same command finishes it
            rerun = synmed(env, ingest_args(source, out))
            assert rerun.returncode == 0, rerun.stderr
        assert visible_set(out) is not None
        assert_same_sets(out, base / "ref")
        assert normalized(out / "manifest.json", out) == normalized(
            base / "ref" / "manifest.json", base / "ref"
        )
    assert leftovers(base) == [], "a killed ingest's staging folder outlives its rerun"


def test_ingest_overwrite_killed_never_shows_a_mixed_set(
    env: dict[str, str], root: Path, source: Path, real: Path
) -> None:
    base = root / "ingest-overwrite"
    old = base / "old"
    timed(env, ingest_args(source, old, "--seed", "1"))
    ref = base / "ref"
    shutil.copytree(old, ref)
    args = ingest_args(source, ref, "--overwrite")
    window = timed(env, args)
    out = base / "set"
    shutil.copytree(old, out)
    args = ingest_args(source, out, "--overwrite")
    readable = [normalized(old / "manifest.json", old), normalized(ref / "manifest.json", ref)]

    def check() -> None:  # the old set, the new one, or a clear error; never a mix
        if visible_set(out) is not None:
            assert normalized(out / "manifest.json", out) in readable

    kill_trials(env, "ingest --overwrite", args, window, check, base / "logs")
    # and twice at the swap itself, over the old set again: when the staged set is complete, and
    # when the first old file is gone from --out
    old_files = sorted(p.name for p in old.iterdir())

    def staged() -> bool:
        return any((p / "manifest.json").exists() for p in base.glob(".set.staging-*"))

    def swapping() -> bool:
        return any(not (out / name).exists() for name in old_files)

    for moment in (staged, swapping):
        shutil.rmtree(out)
        shutil.copytree(old, out)
        proc = subprocess.Popen(cli(env, args), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if moment():
                kill_session(proc.pid)
                break
        proc.wait()
        check()
        seen = (
            "a ShardError"
            if visible_set(out) is None
            else ("the old set", "the new set")[
                readable.index(normalized(out / "manifest.json", out))
            ]
        )
        print(f"ingest --overwrite killed at {moment.__name__}: a reader gets {seen}")
    assert synmed(env, args).returncode == 0
    assert_same_sets(out, ref)
    assert normalized(out / "manifest.json", out) == readable[1]
    assert leftovers(base) == [], "a killed ingest's staging folder outlives its rerun"


def test_ingest_full_disk(env: dict[str, str], root: Path, source: Path, real: Path) -> None:
    out = root / "ingest-full" / "set"
    proc = synmed(env, ingest_args(source, out), limit_kb=4)  # a shard is ~9 KB
    assert_full_disk(proc, out)
    assert not out.exists()
    again = synmed(env, ingest_args(source, out))
    assert again.returncode == 0, again.stderr
    assert_same_sets(out, real)


# -- generator training -----------------------------------------------------------------------------


def train_args(shards: Path, out_dir: Path, *extra: str) -> list[str]:
    return ["train", "generator", LUCID, f"data.shards={shards}", f"run.out_dir={out_dir}",
            "train.max_steps=6", "train.checkpoint_every=1", "train.sample_every=100", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def generator_full_disk(env: dict[str, str], root: Path, real: Path):
    """The training command under a 1 MiB file limit (a checkpoint is ~1.5 MB), then the same
    command without it: the reference run of the kill trials."""
    out_dir = root / "train-ref"
    limited = synmed(env, train_args(real, out_dir), limit_kb=1024)
    found = leftovers(out_dir)
    start = time.monotonic()
    again = synmed(env, train_args(real, out_dir))
    return limited, found, again, out_dir / "tiny-lucidrains", time.monotonic() - start


@pytest.fixture(scope="module")
def generator(generator_full_disk) -> Path:
    *_, again, run, _ = generator_full_disk
    assert again.returncode == 0, again.stderr[-3000:]
    return run


def test_training_full_disk(generator_full_disk) -> None:
    limited, found, again, run, _ = generator_full_disk
    assert_full_disk(limited, run)
    assert found == [], f"a partial checkpoint is left: {found}"
    assert again.returncode == 0, again.stderr[-3000:]
    assert [p.name for p in run_state.list_checkpoints(run)][-1] == "step-00000006"


def test_training_killed_resumes_to_the_same_weights(
    env: dict[str, str], root: Path, real: Path, generator_full_disk, generator: Path
) -> None:
    window = generator_full_disk[-1]
    out_dir = root / "train-kill"
    run = out_dir / "tiny-lucidrains"
    kill_trials(env, "train generator", train_args(real, out_dir, "--auto-resume"), window,
                lambda: visible_run(run), root / "train-logs")  # fmt: skip
    assert_same_run_state(run, generator, "model.safetensors")
    assert leftovers(run) == []


# -- sampling ---------------------------------------------------------------------------------------


def sample_args(generator: Path, out: Path, address: str) -> list[str]:
    return ["sample", "--checkpoint", str(generator), "--num-images", "16", "--shard-size", "4",
            "--batch-size", "4", "--sampler", "ddim", "--sampling-steps", "2", "--workers", "1",
            "--ray-address", address, "--out", str(out)]  # fmt: skip


@pytest.fixture(scope="module")
def sample_full_disk(env: dict[str, str], root: Path, generator: Path, address: str):
    """Sampling with a 1 KiB limit on the driver (its manifest is ~1.4 KB; the shards are written
    by actors of the running Ray, which no ulimit of the command reaches), then without."""
    out = root / "sample-ref" / "samples"
    limited = synmed(env, sample_args(generator, out, address), limit_kb=1)
    found = leftovers(out.parent)
    start = time.monotonic()
    again = synmed(env, sample_args(generator, out, address))
    return limited, found, again, out, time.monotonic() - start


@pytest.fixture(scope="module")
def samples(sample_full_disk) -> Path:
    *_, again, out, _ = sample_full_disk
    assert again.returncode == 0, again.stderr[-3000:]
    return out


def test_sampling_full_disk(sample_full_disk) -> None:
    limited, found, again, out, _ = sample_full_disk
    assert_full_disk(limited, out)
    assert found == [], found
    assert again.returncode == 0, again.stderr[-3000:]
    assert verify_shard_set(out).count == 16


def test_sampling_killed_reruns_to_the_same_images(
    env: dict[str, str], root: Path, generator: Path, address: str, sample_full_disk, samples: Path
) -> None:
    out = root / "sample-kill" / "samples"

    def check() -> None:
        manifest = visible_set(out)
        assert manifest is None or manifest.count == 16

    args = sample_args(generator, out, address)
    kill_trials(env, "sample", args, sample_full_disk[-1], check, root / "sample-logs")
    assert_same_sets(out, samples)
    assert leftovers(out.parent) == []


# -- SSL pretraining --------------------------------------------------------------------------------


def test_pretraining_killed_resumes_to_the_same_weights(
    env: dict[str, str], root: Path, real: Path
) -> None:
    def args(out_dir: Path) -> list[str]:
        return ["pretrain", SIMCLR, f"pretrain.sources.real={real}", f"run.out_dir={out_dir}",
                "pretrain.epochs=1", "pretrain.backbone.image_size=16", "train.checkpoint_every=1",
                "--auto-resume"]  # fmt: skip

    window = timed(env, args(root / "ssl-ref"))
    run = root / "ssl-kill" / "tiny-simclr"
    kill_trials(env, "pretrain", args(root / "ssl-kill"), window, lambda: visible_run(run),
                root / "ssl-logs")  # fmt: skip
    assert_same_run_state(run, root / "ssl-ref" / "tiny-simclr", "backbone.safetensors")
    assert leftovers(run) == []


# -- evaluation -------------------------------------------------------------------------------------


def evaluate_args(shards: Path, out: Path) -> list[str]:
    """kNN on a seeded random ResNet-18's features: a result in seconds, no Ray."""
    return ["evaluate", "classify", CLASSIFY, f"data.shards={shards}", "backbone.kind=random",
            "backbone.arch=resnet18", "backbone.image_size=16", "protocols=[knn]", "seeds=[0]",
            "knn.k=3", "--out", str(out), "--overwrite"]  # fmt: skip


@pytest.fixture(scope="module")
def evaluate_full_disk(env: dict[str, str], root: Path, real: Path):
    """The evaluation with a 2 KiB limit (result.json is ~5 KB), then without."""
    out = root / "eval-ref" / "result"
    limited = synmed(env, evaluate_args(real, out), limit_kb=2)
    found = leftovers(out.parent)
    start = time.monotonic()
    again = synmed(env, evaluate_args(real, out))
    return limited, found, again, out, time.monotonic() - start


def test_evaluation_full_disk(evaluate_full_disk) -> None:
    limited, found, again, out, _ = evaluate_full_disk
    assert_full_disk(limited, out)
    assert found == [], found
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "result.json").read_text())["metrics"]


def test_evaluation_killed_reruns_to_the_same_result(
    env: dict[str, str], root: Path, real: Path, evaluate_full_disk
) -> None:
    _, _, again, ref, window = evaluate_full_disk
    assert again.returncode == 0, again.stderr[-3000:]
    out = root / "eval-kill" / "result"
    want = normalized(ref / "result.json", ref)

    def check() -> None:
        if out.exists():  # the old result (equal to the reference), or a whole new one
            assert normalized(out / "result.json", out) == want

    kill_trials(env, "evaluate classify", evaluate_args(real, out), window, check,
                root / "eval-logs")  # fmt: skip
    assert normalized(out / "result.json", out) == want
    for table in ("metrics.csv", "per_class.csv", "confusion_knn.csv"):
        assert (out / table).read_bytes() == (ref / table).read_bytes(), table
    assert leftovers(out.parent) == []


# -- clustering -------------------------------------------------------------------------------------


def cluster_args(shards: Path, out: Path, address: str) -> list[str]:
    return ["cluster", "--shards", str(shards), "--encoder", "random:16", "--k", "2",
            "--representatives", "2", "--workers", "1", "--ray-address", address,
            "--out", str(out), "--overwrite"]  # fmt: skip


@pytest.fixture(scope="module")
def cluster_full_disk(env: dict[str, str], root: Path, real: Path, address: str):
    """Clustering with an 8 KiB limit (an output shard is ~17 KB), then without."""
    out = root / "cluster-ref" / "clustered"
    limited = synmed(env, cluster_args(real, out, address), limit_kb=8)
    found = leftovers(out.parent)
    start = time.monotonic()
    again = synmed(env, cluster_args(real, out, address))
    return limited, found, again, out, time.monotonic() - start


def test_clustering_full_disk(cluster_full_disk) -> None:
    limited, found, again, out, _ = cluster_full_disk
    assert_full_disk(limited, out)
    assert found == [], found
    assert again.returncode == 0, again.stderr[-3000:]
    assert verify_shard_set(out).count == 32


def test_clustering_killed_reruns_to_the_same_clusters(
    env: dict[str, str], root: Path, real: Path, address: str, cluster_full_disk
) -> None:
    _, _, again, ref, window = cluster_full_disk
    assert again.returncode == 0, again.stderr[-3000:]
    out = root / "cluster-kill" / "clustered"
    want = normalized(ref / "clusters.json", ref)

    def check() -> None:
        if visible_set(out) is not None:
            assert_same_sets(out, ref)
            assert normalized(out / "clusters.json", out) == want

    kill_trials(env, "cluster", cluster_args(real, out, address), window, check,
                root / "cluster-logs")  # fmt: skip
    assert_same_sets(out, ref)
    assert normalized(out / "clusters.json", out) == want
    assert leftovers(out.parent) == []


# -- synmed run -------------------------------------------------------------------------------------


def run_args(source: Path, out_dir: Path) -> list[str]:
    """The quickstart's ingest and generator stages on 32 images of 16 px."""
    return ["run", QUICKSTART, "--until", "generator", f"run.out_dir={out_dir}",
            f"ingest.source={source}", "ingest.format=auto", "ingest.plane_labels=false",
            "ingest.image_size=16", "ingest.shard_size=4", "generator.model.image_size=16",
            "generator.model.dim=8", "generator.model.dim_mults=[1,2]", "generator.model.timesteps=20",
            "generator.train.max_steps=4", "generator.train.batch_size=4",
            "generator.train.checkpoint_every=1", "generator.train.sample_every=4",
            "generator.train.sample_steps=2", "generator.train.ema_update_after_step=0"]  # fmt: skip


def stage_records(run_dir: Path) -> dict[str, object]:
    return {p.stem: normalized(p, run_dir.parent) for p in (run_dir / "stages").glob("*.json")}


def test_run_killed_reruns_to_the_same_outputs(
    env: dict[str, str], root: Path, source: Path
) -> None:
    window = timed(env, run_args(source, root / "run-ref"))
    ref, run_dir = root / "run-ref" / "quickstart", root / "run-kill" / "quickstart"

    def check() -> None:
        for stage in stage_records(run_dir):  # a stage recorded complete has whole outputs
            if stage == "ingest":
                assert visible_set(run_dir / "ingest") is not None
            if stage == "generator":
                visible_run(run_dir / "generator")
                assert (run_dir / "generator" / "export" / "synmed-export.json").is_file()

    trials = kill_trials(env, "run", run_args(source, root / "run-kill"), window, check,
                         root / "run-logs")  # fmt: skip
    assert trials.killed + trials.finished == TRIALS
    assert stage_records(run_dir) == stage_records(ref)
    assert_same_sets(run_dir / "ingest", ref / "ingest")
    assert_same_run_state(run_dir / "generator", ref / "generator", "model.safetensors")
    assert leftovers(run_dir) == []
