"""DINO: self-distillation with no labels (Caron et al., 2021, arXiv:2104.14294).

The student sees 2 global and N local crops, the teacher only the global ones; the teacher is an
EMA of the student whose momentum follows a cosine from 0.996 to 1 per step; the teacher's outputs
are centred (the centre is all-reduced across ranks by lightly's ``DINOLoss``) and sharpened with
a temperature warmed up over the first epochs. Crops of one size go through the network together,
as the paper's multi-crop wrapper does: one forward for the global views, one for the local views.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import DINOTransform
from PIL import Image
from torch import nn

from suite.models.backbones import BackboneSpec
from suite.ssl.config import DINOConfig
from suite.ssl.method import Progress, SSLMethod, cosine


class DINO(SSLMethod):
    def __init__(self, backbone: nn.Module, spec: BackboneSpec, cfg: DINOConfig) -> None:
        super().__init__(backbone, spec)
        self.cfg = cfg
        self.head = self._head(spec, cfg)
        self.teacher_backbone = copy.deepcopy(backbone)
        # weight_norm's tensors cannot be deep-copied: build the teacher's head, then copy the
        # student's weights into it (teacher = student at the start, as in the paper).
        self.teacher_head = self._head(spec, cfg)
        self.teacher_head.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(
            output_dim=cfg.head_output_dim,
            warmup_teacher_temp=cfg.warmup_teacher_temp,
            teacher_temp=cfg.teacher_temp,
            warmup_teacher_temp_epochs=max(1, cfg.warmup_teacher_temp_epochs),
            student_temp=cfg.student_temp,
            center_momentum=cfg.center_momentum,
        )

    @staticmethod
    def _head(spec: BackboneSpec, cfg: DINOConfig) -> DINOProjectionHead:
        with warnings.catch_warnings():  # lightly's head still uses the deprecated weight_norm
            warnings.simplefilter("ignore", FutureWarning)
            return DINOProjectionHead(
                spec.dim,
                cfg.head_hidden_dim,
                cfg.head_bottleneck_dim,
                cfg.head_output_dim,
                batch_norm=cfg.head_batch_norm,
                freeze_last_layer=cfg.freeze_last_layer_epochs,
                norm_last_layer=cfg.norm_last_layer,
            )

    @staticmethod
    def views(cfg: DINOConfig, spec: BackboneSpec) -> Callable[[Image.Image], list[torch.Tensor]]:
        return DINOTransform(
            global_crop_size=spec.image_size,
            global_crop_scale=tuple(cfg.global_crop_scale),
            local_crop_size=cfg.local_crop_size,
            local_crop_scale=tuple(cfg.local_crop_scale),
            n_local_views=cfg.n_local_views,
            hf_prob=cfg.hflip_prob,
            cj_prob=cfg.color_jitter_prob,
            cj_strength=cfg.color_jitter_strength,
            random_gray_scale=cfg.gray_scale_prob,
            gaussian_blur=tuple(cfg.blur_probs),
            solarization_prob=cfg.solarization_prob,
            normalize={"mean": list(spec.mean), "std": list(spec.std)},
        )

    def teacher_temperature(self, epoch: int) -> float:
        cfg = self.cfg
        if epoch >= cfg.warmup_teacher_temp_epochs:
            return cfg.teacher_temp
        fraction = epoch / max(1, cfg.warmup_teacher_temp_epochs - 1)
        return cfg.warmup_teacher_temp + fraction * (cfg.teacher_temp - cfg.warmup_teacher_temp)

    def momentum(self, progress: Progress) -> float:
        return cosine(
            self.cfg.momentum_start, self.cfg.momentum_end, progress.step, progress.max_steps
        )

    def _student(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        out = self.head(self.backbone(torch.cat(views)))
        return list(out.chunk(len(views)))

    def forward(self, views: list[torch.Tensor], progress: Progress) -> torch.Tensor:
        global_views, local_views = views[:2], views[2:]
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone(torch.cat(global_views)))
        student = self._student(global_views)
        if local_views:
            student += self._student(local_views)
        return self.criterion(
            list(teacher.chunk(2)), student, teacher_temp=self.teacher_temperature(progress.epoch)
        )

    def after_backward(self, progress: Progress) -> None:
        self.head.cancel_last_layer_gradients(current_epoch=progress.epoch)

    @torch.no_grad()
    def after_step(self, progress: Progress) -> None:
        m = self.momentum(progress)
        update_momentum(self.backbone, self.teacher_backbone, m=m)
        update_momentum(self.head, self.teacher_head, m=m)

    def log_values(self, progress: Progress) -> dict[str, float]:
        return {
            "teacher_momentum": self.momentum(progress),
            "teacher_temp": self.teacher_temperature(progress.epoch),
        }

    def export_backbone(self) -> nn.Module:
        """The teacher: DINO's paper evaluates the teacher, which is the better of the two."""
        return self.teacher_backbone
