"""The flicker figure: how much a stylizer's output changes between video frames beyond the motion.

**Synthetic clip** (every photo): ``synthetic_clip`` moves a window over the photo with a known
motion, a sub-pixel pan, a slow zoom and a small rotation, and adds sensor-like Gaussian noise to
each frame. Each frame is stylized on its own; then every frame ``t - 1`` is warped onto frame
``t`` with the known motion (bicubic) and the warping error is

    flicker = mean over consecutive pairs of mean |S_t - W_t(S_{t-1})|   over valid pixels

(RGB, [0, 1] scale; valid = pixels of frame ``t`` that lie inside frame ``t - 1``). The same figure
for the unstylized clip (``flicker`` of the photo's own row) is what the noise and the resampling
alone give: a stylizer that moves its strokes with the scene stays near it (one that smooths the
noise goes below it); one that repaints its strokes every frame lies far above.
Lower is steadier.

**Real video** (``video_flicker``): the motion is not known, so a global translation between
consecutive input frames is estimated (phase correlation, whole pixels) and pixels where the
motion-compensated input frames differ by more than ``VIDEO_CHANGE`` (moving objects, occlusions,
cuts) are left out; the figure is the same mean absolute difference over the remaining pixels,
for the stylized and the input frames.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from fast_style.errors import FastStyleError
from fast_style.infer.temporal import VIDEO_CHANGE, aligned_previous, global_shift  # noqa: F401 (re-exported)
from fast_style.model.stability import affine_positions, masked_l1, warp

CLIP_FRAMES = 8
PAN_PER_FRAME = (0.37, 0.23)  # pixels (x, y): sub-pixel, never a whole-pixel copy
ZOOM_PER_FRAME = 0.004  # the window shrinks by 0.4 % a frame (a slow zoom in)
ROTATION_PER_FRAME = 0.15  # degrees
CLIP_NOISE = 0.01  # standard deviation of the per-frame Gaussian noise ([0, 1] scale)
VIDEO_FRAMES = 30

Stylize = Callable[[torch.Tensor], torch.Tensor]  # (T, 3, h, w) in [0, 1] -> same


def clip_motion(frames: int) -> list[tuple[float, float, tuple[float, float]]]:
    """``(angle radians, scale, (dx, dy) pixels)`` of the window over the photo, per frame."""
    return [
        (
            math.radians(ROTATION_PER_FRAME * t),
            1.0 - ZOOM_PER_FRAME * t,
            (PAN_PER_FRAME[0] * t, PAN_PER_FRAME[1] * t),
        )
        for t in range(frames)
    ]


def _window_positions(motion, frame_hw: tuple[int, int], photo_hw: tuple[int, int]) -> torch.Tensor:
    """Photo coordinates ``(h, w, 2)`` sampled by a window of ``frame_hw`` with ``motion``."""
    (angle, scale, shift), (h, w), (ph, pw) = motion, frame_hw, photo_hw
    offset = torch.tensor([[(pw - w) / 2 + shift[0], (ph - h) / 2 + shift[1]]], dtype=torch.float64)
    return affine_positions(
        torch.tensor([angle], dtype=torch.float64), torch.tensor([scale], dtype=torch.float64), offset, h, w
    )[0]


def clip_margin(frames: int, height: int, width: int) -> int:
    """Pixels kept free on each side of the photo so every window stays inside it."""
    angle, scale, (dx, dy) = clip_motion(frames)[-1]
    half_diagonal = math.hypot(height, width) / 2
    reach = abs(dx) + abs(dy) + half_diagonal * (abs(angle) + abs(1 - scale))
    return math.ceil(reach) + 2


def synthetic_clip(
    photo: torch.Tensor, frames: int = CLIP_FRAMES, noise: float = CLIP_NOISE, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A short clip of ``photo`` ``(3, H, W)`` in [0, 1] moving with the known motion.

    Returns ``(clip (T, 3, h, w) in [0, 1], back (T-1, h, w, 2))``: ``back[t-1]`` holds, for each
    pixel of frame ``t``, its position in frame ``t - 1`` (frame pixel coordinates), so
    ``warp(S[t-1][None], back[t-1][None])`` lines frame ``t - 1`` up with frame ``t``. The frames
    are the photo without a margin (``clip_margin``) on each side, so no frame samples outside it.
    """
    if frames < 2:
        raise FastStyleError(f"a flicker clip needs at least 2 frames, got {frames}: pass flicker_frames >= 2")
    _, height, width = photo.shape
    margin = clip_margin(frames, height, width)
    h, w = height - 2 * margin, width - 2 * margin
    if h < 8 or w < 8:
        raise FastStyleError(
            f"photo {width}x{height} is too small for a {frames}-frame flicker clip: use photos of at least "
            f"{2 * margin + 8} px or size= larger"
        )
    motions = clip_motion(frames)
    windows = [_window_positions(m, (h, w), (height, width)) for m in motions]
    generator = torch.Generator().manual_seed(seed)
    source = photo.double()[None]
    clip = []
    for positions in windows:
        frame, _ = warp(source, positions[None], mode="bicubic", padding="border")
        frame = frame[0] + noise * torch.randn(frame.shape[1:], generator=generator, dtype=torch.float64)
        clip.append(frame.clamp(0, 1).float())
    back = [_inverse_window(motions[t - 1], windows[t], (h, w), (height, width)) for t in range(1, frames)]
    return torch.stack(clip), torch.stack(back).float()


def _inverse_window(motion, photo_points: torch.Tensor, frame_hw, photo_hw) -> torch.Tensor:
    """Frame coordinates (of the window with ``motion``) of ``photo_points`` ``(h, w, 2)``."""
    (angle, scale, shift), (h, w), (ph, pw) = motion, frame_hw, photo_hw
    frame_centre = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64)
    photo_centre = frame_centre + torch.tensor([(pw - w) / 2 + shift[0], (ph - h) / 2 + shift[1]], dtype=torch.float64)
    cos, sin = math.cos(angle), math.sin(angle)
    # The window maps p -> photo_centre + scale * R (p - frame_centre); invert R and the scale.
    inverse = torch.tensor([[cos, sin], [-sin, cos]], dtype=torch.float64) / scale
    return torch.einsum("ij,hwj->hwi", inverse, photo_points - photo_centre) + frame_centre


def warping_error(frames: torch.Tensor, back: torch.Tensor) -> float:
    """Mean over consecutive pairs of ``mean |F_t - W_t(F_{t-1})|`` over valid pixels.

    ``frames`` ``(T, 3, h, w)`` in [0, 1]; ``back`` ``(T-1, h, w, 2)`` as ``synthetic_clip`` returns.
    """
    errors = []
    for t in range(1, len(frames)):
        previous, valid = warp(frames[t - 1][None].double(), back[t - 1][None].double(), mode="bicubic")
        errors.append(float(masked_l1(frames[t][None].double(), previous.clamp(0, 1), valid)))
    return statistics.fmean(errors)


def stylize_frames(stylize: Stylize, clip: torch.Tensor, batch_size: int = 1) -> torch.Tensor:
    """Each frame stylized on its own (``stylize``: ``(B, 3, h, w)`` -> same), as ``stylize.py`` does."""
    with torch.no_grad():
        parts = [stylize(clip[i : i + batch_size]).float().cpu() for i in range(0, len(clip), batch_size)]
    return torch.cat(parts).clamp(0, 1)


def clip_flicker(stylize: Stylize, photo: torch.Tensor, frames: int = CLIP_FRAMES) -> dict[str, float]:
    """``{"flicker": stylized clip's warping error, "flicker_clip": the unstylized clip's}``."""
    clip, back = synthetic_clip(photo, frames)
    return {"flicker": warping_error(stylize_frames(stylize, clip), back), "flicker_clip": warping_error(clip, back)}


# -- real videos -------------------------------------------------------------------------------
def read_video_frames(path: str | Path, limit: int = VIDEO_FRAMES, size: int | None = None) -> torch.Tensor:
    """The first ``limit`` frames of a video as ``(T, 3, H, W)`` float in [0, 1] (longer side ``size``)."""
    import av
    import torch.nn.functional as F

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FastStyleError(f"{path} has no video stream: pass video=<a video file>")
            frames = []
            for frame in container.decode(container.streams.video[0]):
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
                if len(frames) >= limit:
                    break
    except av.FFmpegError as exc:
        raise FastStyleError(f"cannot read video {path} ({exc}): pass a valid video file") from exc
    if len(frames) < 2:
        raise FastStyleError(f"video {path} has {len(frames)} decodable frames: the flicker figure needs at least 2")
    clip = torch.stack(frames).float().div_(255)
    if size:
        h, w = clip.shape[-2:]
        scale = size / max(h, w)
        shape = (max(8, round(h * scale)), max(8, round(w * scale)))
        clip = F.interpolate(clip, size=shape, mode="bicubic", antialias=True).clamp_(0, 1)
    return clip


def video_flicker(stylize: Stylize, frames: torch.Tensor, batch_size: int = 1) -> dict[str, float]:
    """``{"flicker", "flicker_clip", "static_share"}`` of a real clip ``(T, 3, H, W)`` in [0, 1].

    Consecutive frames are aligned by their global whole-pixel shift; pixels where the aligned input
    frames differ by more than ``VIDEO_CHANGE`` are left out (``static_share``: the share kept).
    """
    styled = stylize_frames(stylize, frames, batch_size)
    stylized_errors, input_errors, shares = [], [], []
    for t in range(1, len(frames)):
        previous_in, valid, (previous_out,) = aligned_previous(frames[t - 1], frames[t], styled[t - 1])
        input_errors.append(float(masked_l1(frames[t][None].double(), previous_in, valid)))
        stylized_errors.append(float(masked_l1(styled[t][None].double(), previous_out, valid)))
        shares.append(float(valid.double().mean()))
    return {
        "flicker": statistics.fmean(stylized_errors),
        "flicker_clip": statistics.fmean(input_errors),
        "static_share": statistics.fmean(shares),
    }


# -- an animated comparison (README, docs/video.md) ----------------------------------------------
def comparison_animation(
    columns: list[tuple[str, Stylize | None]], photo: torch.Tensor, frames: int = 16, label_height: int = 14
) -> list:
    """Frames of a side-by-side animation of ``photo``'s synthetic clip: one column per
    ``(label, stylize)`` (``stylize=None``: the moving photo itself), every column the same frames.

    ``photo`` ``(3, H, W)`` in [0, 1]. Returns PIL RGB images, ping-ponged (forward, then back
    without repeating the ends) so that a looping animation never jumps.
    """
    from PIL import Image, ImageDraw

    clip, _ = synthetic_clip(photo, frames)
    rendered = [clip if stylize is None else stylize_frames(stylize, clip) for _, stylize in columns]
    _, _, h, w = clip.shape
    labels = Image.new("RGB", (w * len(columns), label_height), "white")  # drawn apart: text never spills
    draw = ImageDraw.Draw(labels)
    for c, (label, _) in enumerate(columns):
        draw.text((c * w + 3, 1), label, fill="black")
    images = []
    for t in range(frames):
        sheet = Image.new("RGB", (w * len(columns), h + label_height), "white")
        sheet.paste(labels, (0, 0))
        for c, video in enumerate(rendered):
            pixels = (video[t].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
            sheet.paste(Image.fromarray(pixels), (c * w, label_height))
        images.append(sheet)
    return images + images[-2:0:-1]


def save_animation(images: list, path: str | Path, fps: float = 8.0) -> Path:
    """Save frames as a looping GIF (or APNG for a ``.png`` path). A GIF gets one palette for all
    frames and no dithering: per-frame palettes or dither patterns would add a flicker of their own."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = round(1000 / fps)
    if path.suffix.lower() == ".png":
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
        return path
    mosaic = Image.new("RGB", (images[0].width, images[0].height * len(images)))
    for i, image in enumerate(images):
        mosaic.paste(image, (0, i * image.height))
    palette = mosaic.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    frames = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, loop=0, optimize=False)
    return path
