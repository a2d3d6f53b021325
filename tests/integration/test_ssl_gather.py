"""The SSL losses across 2 real gloo ranks equal the one-process loss on the global batch:
SimCLR's NT-Xent gathers the other rank's embeddings (with gradients), DINO's centre is
all-reduced."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightly.loss import DINOLoss, NTXentLoss

TORCH_SEED = 0
B, D = 4, 8  # per-rank batch, embedding width


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(TORCH_SEED)
    z0, z1 = torch.randn(2 * B, D, generator=g), torch.randn(2 * B, D, generator=g)
    teacher = torch.randn(2, 2 * B, D, generator=g)  # 2 views x global batch
    return z0, z1, teacher


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    z0, z1, teacher = _inputs()
    mine = slice(rank * B, (rank + 1) * B)
    a = z0[mine].clone().requires_grad_(True)
    loss = NTXentLoss(temperature=0.5, gather_distributed=True)(a, z1[mine])
    loss.backward()
    dino = DINOLoss(output_dim=D, warmup_teacher_temp_epochs=1)
    dino.update_center(teacher[:, mine])
    torch.save(
        {"loss": loss.detach(), "grad": a.grad, "center": dino.center}, f"{out}/rank{rank}.pt"
    )
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_losses_gather_across_two_gloo_ranks(tmp_path: Path) -> None:
    mp.start_processes(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]

    z0, z1, teacher = _inputs()
    a = z0.clone().requires_grad_(True)
    whole = NTXentLoss(temperature=0.5)(a, z1)
    whole.backward()
    # each rank's loss is the mean over its own positives: their mean is the global loss
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, whole.detach())
    # and the gradient reaching each rank's embeddings is the global one (up to the 1/world mean
    # DDP applies when it averages gradients)
    grads = torch.cat([ranks[0]["grad"], ranks[1]["grad"]]) / 2
    torch.testing.assert_close(grads, a.grad)

    dino = DINOLoss(output_dim=D, warmup_teacher_temp_epochs=1)
    dino.update_center(teacher)
    for r in ranks:
        torch.testing.assert_close(r["center"], dino.center)
