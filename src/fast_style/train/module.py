"""LightningModule: trains a TransformerNet against a frozen PerceptualLoss."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch

from fast_style.checkpoint_format import CHECKPOINT_KEY, FORMAT_VERSION, NET_PREFIX, strip_compile_prefix
from fast_style.errors import FastStyleError
from fast_style.model.networks import TransformerNet
from fast_style.model.perceptual import PerceptualLoss
from fast_style.model.stability import StabilityLoss

SKIPPED_KEY = "fast_style_skipped_files"  # the unreadable files seen so far (a sorted list of str)
SKIPPED_PRINTED = 10  # the first unreadable files are named as they appear; the rest only at the end


class NonFiniteLossError(FastStyleError):
    """A loss term became NaN or infinite; the message names the step and the term."""


def _use_safe_cpu_vector_width() -> None:
    """Have Inductor's CPU code generator use 256-bit vectors (AVX2) unless the user chose a width.

    With torch 2.14.1 on an Intel Xeon with AMX, the 512-bit kernels Inductor generates for the
    transformer net's bf16 backward return NaN gradients from the second residual block down
    (eager is finite, and so is each block compiled on its own); 256-bit kernels are exact. Only CPU
    kernels are affected: GPUs compile through Triton.
    """
    import torch._inductor.config as inductor_config

    if inductor_config.cpp.simdlen is None:
        inductor_config.cpp.simdlen = 256


class StyleTransferModule(pl.LightningModule):
    """Johnson-style training.

    Args:
        net: the transformer net being trained.
        loss: the perceptual loss (holds the frozen VGG and the style Grams).
        optimizer: a partial ``torch.optim`` constructor taking the parameters (Hydra ``_partial_``).
        scheduler: optional partial LR scheduler constructor taking the optimizer (stepped per step).
        metadata: plain data saved in every checkpoint (style name, config) next to the model config.
        channels_last: keep both nets and the batches in NHWC, which is faster on GPUs and bf16 CPUs.
        stability: optional stability term (``loss.stability_weight`` > 0), logged as ``loss/stability``.
        train_styles: a multi-style net's styles (indices) that training samples; None: all.
        train_only_norms: optimize only the norms' per-style scales and shifts, and keep the rows
            of every style outside ``train_styles`` bit-identical (adding styles to a trained net).
    """

    def __init__(
        self,
        net: TransformerNet,
        loss: PerceptualLoss,
        optimizer: partial | None = None,
        scheduler: partial | None = None,
        metadata: dict[str, Any] | None = None,
        channels_last: bool = True,
        compile: bool = False,
        stability: StabilityLoss | None = None,
        train_styles: list[int] | None = None,
        train_only_norms: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer or partial(torch.optim.Adam, lr=1e-3)
        self.scheduler_factory = scheduler
        self.metadata = dict(metadata or {})
        self.channels_last = channels_last
        self.compile = compile
        self.stability = stability
        self.skipped_files: set[str] = set()
        self.num_styles = getattr(net, "num_styles", 1)
        self.train_styles = list(range(self.num_styles)) if train_styles is None else list(train_styles)
        self.train_only_norms = train_only_norms
        # Adding styles: the other styles' rows are restored after every optimizer step, whatever
        # the optimizer does with zero gradients (AdamW's weight decay would move them).
        self._kept_rows: dict[str, tuple[list[int], torch.Tensor]] = {}
        if train_only_norms:
            norms = set(net.norm_parameter_names())
            kept = [i for i in range(self.num_styles) if i not in self.train_styles]
            for name, param in net.named_parameters():
                param.requires_grad_(name in norms)
                if name in norms and kept:
                    self._kept_rows[name] = (kept, param.detach()[kept].clone())
        self.finite_check_every = 25
        self._first_bad_step: torch.Tensor | None = None
        self._bad_terms: torch.Tensor | None = None
        # The VGG and the style Grams are rebuilt from the config: keep them out of checkpoints.
        self.strict_loading = False
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
            self.loss.to(memory_format=torch.channels_last)
        if compile:
            _use_safe_cpu_vector_width()
        # What runs the forward passes: the modules themselves or torch.compile wrappers sharing
        # their parameters. Set through __dict__ so the wrappers are not registered as submodules
        # (their "_orig_mod." keys would double every checkpoint).
        self.__dict__["_net_fn"] = torch.compile(self.net) if compile else self.net
        self.__dict__["_loss_fn"] = torch.compile(self.loss) if compile else self.loss

    def forward(self, images: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] (and ``(B, S)`` style weights for several styles) -> stylized,
        same shape, unclamped [0, 1] scale."""
        return self._net_fn(images, style_weights)

    def _to_unit_float(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        # Batches come from the DataLoader workers to this process, so one set here counts each
        # unreadable file exactly once across workers and epochs (and resumes: it is checkpointed).
        for item in batch.get("skipped", ()):
            if item not in self.skipped_files:
                self.skipped_files.add(item)
                if len(self.skipped_files) <= SKIPPED_PRINTED:
                    self.print(f"skipped an unreadable image: {item}")
                elif len(self.skipped_files) == SKIPPED_PRINTED + 1:
                    self.print("(further unreadable images are skipped quietly and listed at the end)")
        self.log("data/skipped_files", float(len(self.skipped_files)), on_step=True)
        # ModelCheckpoint(monitor="global_step", mode="max") keeps the newest K periodic checkpoints.
        self.log("global_step", float(self.global_step), on_step=True)
        images = batch["images"]
        if images.numel() == 0:
            return None  # every image of this batch was unreadable
        content = self._to_unit_float(images)
        index = one_hot = None
        if self.num_styles > 1:  # each sample its own style (one-hot style_weights)
            index = self.sample_styles(content.shape[0]).to(content.device)
            one_hot = torch.nn.functional.one_hot(index, self.num_styles).float()
        if self.stability is None:
            stylized = self._net_fn(content) if one_hot is None else self._net_fn(content, one_hot)
            terms = self._loss_fn(stylized, content, index)
        else:
            terms = self._terms_with_stability(content, one_hot, index)
        self._check_finite(terms)
        batch_size = content.shape[0]
        self.log_dict({f"loss/{k}": v for k, v in terms.items()}, on_step=True, prog_bar=True, batch_size=batch_size)
        return terms["total"]

    def _terms_with_stability(
        self, content: torch.Tensor, one_hot: torch.Tensor | None = None, index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The perceptual terms of f(x) plus ``stability`` (see ``model/stability.py``); the net runs
        once on the photos and their moved, noisy copies together (instance norm is per image).

        ``content`` ``(B, 3, H, W)`` in [0, 1]; a multi-style net's ``one_hot`` ``(B, S)`` style
        weights and ``index`` ``(B,)`` styles (None with one style): each moved copy is stylized
        in its photo's style, since the term compares the two outputs pixel by pixel."""
        moved, positions = self.stability.perturb(content)
        photos = torch.cat([content, moved])
        both = self._net_fn(photos) if one_hot is None else self._net_fn(photos, torch.cat([one_hot, one_hot]))
        stylized, stylized_moved = both[: len(content)], both[len(content) :]
        terms = self._loss_fn(stylized, content, index)
        terms["stability"] = self.stability(stylized, stylized_moved, positions)
        terms["total"] = terms["total"] + terms["stability"]
        return terms

    def sample_styles(self, batch_size: int) -> torch.Tensor:
        """Each sample's style: ``(batch_size,)`` long from ``train_styles``, a random permutation
        repeated, so every style gets a share of each batch as equal as the batch size allows
        (torch's global RNG: restored on resume like the data order)."""
        styles = torch.tensor(self.train_styles)
        order = styles[torch.randperm(len(styles))]
        return order.repeat(-(-batch_size // len(styles)))[:batch_size]

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self._kept_rows:
            with torch.no_grad():
                for name, (rows, values) in self._kept_rows.items():
                    self.net.get_parameter(name)[rows] = values.to(self.device)

    def _check_finite(self, terms: dict[str, torch.Tensor]) -> None:
        """Stop with the step and term of the first non-finite loss.

        Reading a flag from the GPU forces a sync that stalls the pipeline, so on accelerators the
        flags accumulate on the device and are read every ``finite_check_every`` steps; the step
        recorded is still the first bad one.
        """
        finite = torch.stack([value.detach() for value in terms.values()]).isfinite()
        if self._first_bad_step is None:
            self._first_bad_step = torch.full((), -1, device=finite.device, dtype=torch.long)
            self._bad_terms = torch.zeros_like(finite)
        newly_bad = (~finite).any() & (self._first_bad_step < 0)
        self._first_bad_step = torch.where(newly_bad, self.global_step, self._first_bad_step)
        self._bad_terms = torch.where(newly_bad, ~finite, self._bad_terms)
        if finite.device.type == "cpu" or self.global_step % self.finite_check_every == 0:
            step = int(self._first_bad_step)
            if step >= 0:
                bad = [name for name, flag in zip(terms, self._bad_terms.tolist(), strict=True) if flag]
                raise NonFiniteLossError(
                    f"non-finite {'/'.join(bad)} loss at step {step}: lower optimizer.lr or the loss weights, "
                    "or train with trainer.precision=bf16-mixed or 32 instead of 16-mixed"
                )

    def configure_optimizers(self):
        optimizer = self.optimizer_factory([p for p in self.net.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {
            key: value
            for key, value in strip_compile_prefix(checkpoint["state_dict"]).items()
            if key.startswith(NET_PREFIX)
        }
        checkpoint[CHECKPOINT_KEY] = {
            "format_version": FORMAT_VERSION,
            "model": dict(self.net.config),
            **self.metadata,
            "skipped_files": len(self.skipped_files),
        }
        checkpoint[SKIPPED_KEY] = sorted(self.skipped_files)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = strip_compile_prefix(checkpoint["state_dict"])
        # On resume the count continues instead of restarting at 0.
        self.skipped_files.update(checkpoint.get(SKIPPED_KEY, ()))


def lr_warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.1):
    """Linear warm-up then cosine decay to ``min_ratio`` of the base LR (per step)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
