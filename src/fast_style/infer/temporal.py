"""``video_blend``: a temporal blend that steadies a stylized video at inference, without retraining.

Each output frame is blended with the previous *output* frame, moved by the camera's global motion
(a whole-pixel shift estimated from the input frames by phase correlation), only where the aligned
input frames agree (so moving objects and occlusions are not smeared), and not at all across a cut:

    out_t = (1 - a·m) · S_t + a·m · shift(out_{t-1}),   m = 1 where |F_t - shift(F_{t-1})| <= VIDEO_CHANGE

``a`` is ``video_blend`` (0 = off). Chained over frames this is an exponential moving average of
the strokes along the motion: it removes a stylizer's frame-to-frame repainting at the cost of a
slight softening and of trails behind sub-pixel or non-translational motion. Measured with the
flicker figure in docs/video.md. Frames are ``(B, 3, H, W)`` float in [0, 1] on the CPU.
"""

from __future__ import annotations

import torch

from fast_style.model.stability import identity_positions, warp

VIDEO_CHANGE = 0.1  # mean RGB change above which a pixel counts as moving on its own
LUMA = (0.299, 0.587, 0.114)
# Below this share of agreeing pixels the frames belong to different shots (a cut): no blend at
# all, since the few pixels that agree by chance (flat areas of similar colour) would ghost.
CUT_SHARE = 0.5


def global_shift(previous: torch.Tensor, current: torch.Tensor) -> tuple[int, int]:
    """Whole-pixel ``(dx, dy)`` such that ``current(p)`` ~ ``previous(p + (dx, dy))`` (phase correlation
    of the luminance of two ``(3, H, W)`` frames in [0, 1])."""
    weights = torch.tensor(LUMA, dtype=torch.float64)[:, None, None]
    a = (previous.double() * weights).sum(0)
    b = (current.double() * weights).sum(0)
    cross = torch.fft.fft2(a - a.mean()) * torch.fft.fft2(b - b.mean()).conj()
    response = torch.fft.ifft2(cross / cross.abs().clamp_min(1e-12)).real
    h, w = response.shape
    dy, dx = divmod(int(response.argmax()), w)
    return (dx - w if dx > w // 2 else dx), (dy - h if dy > h // 2 else dy)


def aligned_previous(
    previous: torch.Tensor, current: torch.Tensor, *others: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Align frame ``previous`` ``(3, H, W)`` to ``current`` by their global shift.

    Returns ``(previous moved (1, 3, H, W), still (1, 1, H, W) bool, others moved)``: ``still`` marks
    pixels inside the frame whose aligned input frames differ by at most ``VIDEO_CHANGE``; ``others``
    (e.g. the previous stylized frame) are moved by the same shift.
    """
    dx, dy = global_shift(previous, current)
    h, w = current.shape[-2:]
    positions = identity_positions(1, h, w, dtype=torch.float64) + torch.tensor([dx, dy], dtype=torch.float64)
    moved, valid = warp(previous[None].double(), positions)
    still = valid & ((current[None].double() - moved).abs().mean(1, keepdim=True) <= VIDEO_CHANGE)
    return moved, still, [warp(o[None].double(), positions)[0] for o in others]


class TemporalBlend:
    """Stateful over a video: call with each batch of input frames and their stylized frames, in order."""

    def __init__(self, strength: float) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"video_blend={strength}: use a value from 0 (off) to below 1")
        self.strength = strength
        self.previous_input: torch.Tensor | None = None
        self.previous_output: torch.Tensor | None = None

    def __call__(self, frames: torch.Tensor, styled: torch.Tensor) -> torch.Tensor:
        """``frames``, ``styled`` ``(B, 3, H, W)`` in [0, 1] -> blended ``(B, 3, H, W)`` in [0, 1]."""
        if self.strength == 0:
            return styled
        out = []
        for frame, current in zip(frames.float(), styled.float(), strict=True):
            if self.previous_input is not None and self.previous_input.shape == frame.shape:
                _, still, (moved_output,) = aligned_previous(self.previous_input, frame, self.previous_output)
                if still.double().mean() >= CUT_SHARE:
                    weight = self.strength * still.float()[0]
                    current = ((1 - weight) * current + weight * moved_output[0].float()).clamp(0, 1)
            self.previous_input, self.previous_output = frame, current
            out.append(current)
        return torch.stack(out).to(styled.dtype)
