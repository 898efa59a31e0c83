"""Stylizing videos with PyAV: frames are decoded, stylized in batches and re-encoded at the
input's frame rate and timestamps; audio (and subtitle) packets are copied through untouched.

Frames handed to ``process`` are ``(B, 3, H, W)`` float32 RGB in [0, 1]; it returns the same.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fast_style.errors import FastStyleError
from fast_style.files import atomic_write

VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}


def _encoder_for(suffix: str) -> tuple[str, dict[str, str]]:
    import av

    if suffix == ".webm":
        return "libvpx-vp9", {"crf": "30", "b": "0"}
    if "libx264" in av.codecs_available:
        return "libx264", {"crf": "18", "preset": "medium"}
    return "mpeg4", {"qscale": "3"}


def _frame_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(30)


def stylize_video(
    source: Path,
    target: Path,
    process: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 4,
    show_progress: bool = True,
) -> int:
    """Write the stylized ``source`` video to ``target`` (atomically); returns the frame count."""
    import av

    try:
        container = av.open(str(source))
    except (av.FFmpegError, OSError) as exc:
        raise FastStyleError(f"cannot read video {source} ({exc}): pass a valid video file") from exc
    with container:
        if not container.streams.video:
            raise FastStyleError(f"{source} has no video stream: pass a video or an image")
        video_in = container.streams.video[0]
        passthrough = [s for s in container.streams if s.type in ("audio", "subtitle")]
        codec, options = _encoder_for(target.suffix.lower())

        def write(tmp: Path) -> int:
            with av.open(str(tmp), mode="w") as output:
                rate = _frame_rate(video_in)
                video_out = output.add_stream(codec, rate=rate, options=options)
                video_out.width, video_out.height = video_in.codec_context.width, video_in.codec_context.height
                # 4:2:0 needs even sizes; odd-sized videos are kept exact in 4:4:4.
                even = video_out.width % 2 == 0 and video_out.height % 2 == 0
                video_out.pix_fmt = "yuv420p" if even or codec == "mpeg4" else "yuv444p"
                video_out.time_base = video_in.time_base or Fraction(1, int(round(rate * 1000)))
                copies = {}
                for stream in passthrough:
                    try:
                        copies[stream.index] = output.add_stream_from_template(stream)
                    except (av.FFmpegError, ValueError) as exc:
                        raise FastStyleError(
                            f"cannot copy the {stream.type} stream ({stream.codec_context.name}) of {source} into "
                            f"{target.suffix}: write to .mkv instead"
                        ) from exc
                frames = 0
                pending: list = []

                def flush() -> None:
                    nonlocal frames
                    if not pending:
                        return
                    batch = torch.stack(
                        [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in pending]
                    )
                    styled = process(batch.float().div_(255.0))
                    arrays = styled.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()
                    for original, array in zip(pending, arrays, strict=True):
                        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
                        frame = frame.reformat(format=video_out.pix_fmt)
                        frame.pts, frame.time_base = original.pts, original.time_base
                        output.mux(video_out.encode(frame))
                        progress.update(1)
                    frames += len(pending)
                    pending.clear()

                total = video_in.frames or None
                with tqdm(total=total, disable=not show_progress, desc="frames", unit="frame") as progress:
                    for packet in container.demux(video_in, *passthrough):
                        if packet.stream.index in copies:
                            if packet.dts is None:  # demuxer's end-of-stream marker
                                continue
                            packet.stream = copies[packet.stream.index]
                            output.mux(packet)
                            continue
                        for frame in packet.decode():
                            pending.append(frame)
                            if len(pending) >= batch_size:
                                flush()
                    flush()
                output.mux(video_out.encode(None))  # drain the encoder's delayed frames
            return frames

        result = {}
        try:
            atomic_write(target, lambda tmp: result.setdefault("frames", write(tmp)))
        except av.FFmpegError as exc:
            raise FastStyleError(f"video {source} failed to convert ({exc}): the file may be damaged") from exc
    if not result.get("frames"):
        target.unlink(missing_ok=True)
        raise FastStyleError(f"video {source} has no decodable frames: pass a valid video file")
    return result["frames"]
