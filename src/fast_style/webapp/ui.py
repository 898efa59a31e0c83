"""The Gradio page and API over a ``StyleService``; ``serve(settings)`` starts it.

Safety defaults (see README, "Try styles in a browser"): the server binds 127.0.0.1 unless
``host=`` says otherwise and then requires ``auth=``; it never opens a share link; models are
picked by name from the configured list; uploads above ``max_upload_mb`` are refused by Gradio's
upload route and again here before decoding, photos above ``max_megapixels`` after reading their
header; every uploaded file is deleted as soon as it has been read (before the network runs; the
bytes of the last few stay in memory for ``result_minutes``, see ``UploadReader``), results after
``result_minutes``, and the server's private temporary folder when it stops. Errors are one line
on the page (or an ``AppError`` in ``gradio_client``), never a stack trace.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import io
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import ImageData

from fast_style.errors import FastStyleError
from fast_style.webapp.service import OUTPUT_SIZES, STROKE_SCALE, WEBCAM_SIZES, StyleService
from fast_style.webapp.settings import AppSettings

FPS_WINDOW = 10  # frames averaged in the webcam's frames-per-second readout
CSS = """
#result img, #live img { object-fit: contain; }
#fps { min-height: 1.5em; }
"""


def _user_error(message: str) -> gr.Error:
    # Gradio renders the message as HTML: escape it (it may quote what a client sent).
    return gr.Error(html.escape(" ".join(message.split()), quote=False), print_exception=False)


def guarded(function: Callable) -> Callable:
    """A ``FastStyleError`` becomes its one-line message on the page; anything unexpected is
    logged with its traceback on the server and reported on the page in one line."""

    @wraps(function)
    def wrapper(*args: Any) -> Any:
        try:
            return function(*args)
        except gr.Error:
            raise
        except FastStyleError as exc:
            raise _user_error(str(exc)) from None
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            raise _user_error(f"stylizing failed ({type(exc).__name__}); the server log has the details") from None

    return wrapper


# Held while a result folder is created and filled, and while empty folders are swept.
_FOLDER_LOCK = threading.Lock()


class UploadReader:
    """Replaces ``gr.Image.preprocess``: the uploaded file (or data URL) -> RGB PIL image.

    Sizes are checked before decoding. The uploaded file is deleted from disk as soon as it has
    been read, whatever happens next. Gradio names an upload after its content's SHA-256, so two
    uploads of the same photo (a second click on "Stylize", or two visitors) share one path: the
    bytes of the last few uploads stay in memory, keyed by that path, for ``keep_s`` seconds,
    so that the second request finds them after the first one deleted the file.

    The emptied ``<sha256>/`` folders stay until they have been empty for ``keep_s`` seconds (a
    sweep at most once a minute removes them): Gradio's upload route creates a photo's folder and
    then moves the file into it, so removing the folder at once raced with a concurrent upload of
    the same photo (its move failed: a 500 and a stray temporary file).
    """

    def __init__(self, service: StyleService, upload_root: Path, keep_s: float, entries: int = 8) -> None:
        self.service, self.upload_root, self.keep_s, self.entries = service, upload_root, keep_s, entries
        self._recent: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def _remember(self, key: str, data: bytes) -> None:
        with self._lock:
            self._recent[key] = (time.monotonic() + self.keep_s, data)
            self._recent.move_to_end(key)
            while len(self._recent) > self.entries:
                self._recent.popitem(last=False)

    def _recall(self, key: str) -> bytes | None:
        with self._lock:
            now = time.monotonic()
            for old in [k for k, (expiry, _) in self._recent.items() if expiry < now]:
                del self._recent[old]
            entry = self._recent.get(key)
            return entry[1] if entry else None

    def _read_file(self, path: Path) -> bytes:
        key = str(path.resolve())
        try:
            self.service.check_upload_size(path.stat().st_size)
            data = path.read_bytes()
        except FileNotFoundError:
            data = self._recall(key)
            if data is None:
                raise FastStyleError("the photo is no longer on the server: upload it again") from None
            return data
        finally:
            if path.resolve().is_relative_to(self.upload_root):
                path.unlink(missing_ok=True)  # nothing uploaded stays on disk
                self.sweep_empty_folders()
        self._remember(key, data)
        return data

    def sweep_empty_folders(self, now: float | None = None) -> None:
        """Remove the upload root's subfolders that have been empty for over ``keep_s`` seconds
        (their modification time is when their last file went); runs at most once a minute."""
        now = time.time() if now is None else now
        with self._lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + 60
        with _FOLDER_LOCK:  # result_output fills its folders under the same lock
            for folder in self.upload_root.iterdir():
                try:
                    if folder.is_dir() and not folder.is_symlink() and folder.stat().st_mtime < now - self.keep_s:
                        folder.rmdir()
                except OSError:
                    pass  # not empty, or already gone

    def __call__(self, payload: Any) -> Any:
        if payload is None:
            return None
        try:
            url = getattr(payload, "url", None) or ""
            if url.startswith("data:"):  # webcam frames and clients that inline the image
                encoded = url.partition(",")[2]
                self.service.check_upload_size(len(encoded) * 3 // 4)
                try:
                    data = base64.b64decode(encoded, validate=False)
                except (binascii.Error, ValueError):
                    raise FastStyleError("the image data is not valid base64: send the file itself") from None
            elif getattr(payload, "path", None):
                data = self._read_file(Path(payload.path))
            else:
                raise FastStyleError("no image received: upload or paste a photo")
            return self.service.open_photo(data)
        except FastStyleError as exc:
            raise _user_error(str(exc)) from None
        except OSError as exc:
            raise _user_error(f"cannot read the upload ({type(exc).__name__}): send it again") from None


def image_input(reader: UploadReader, **kwargs: Any) -> gr.Image:
    """A ``gr.Image`` whose uploads go through ``reader`` (limits, decoding, deletion)."""
    component = gr.Image(type="pil", image_mode=None, **kwargs)
    component.preprocess = reader  # type: ignore[method-assign]
    return component


def frame_output(**kwargs: Any) -> gr.Image:
    """A streaming ``gr.Image`` output that sends each frame inline as a JPEG data URL: Gradio
    would write every frame to a file in its cache (thousands of files a minute)."""
    component = gr.Image(streaming=True, interactive=False, **kwargs)

    def postprocess(value: Any) -> ImageData | None:
        if value is None:
            return None
        buffer = io.BytesIO()
        value.save(buffer, format="JPEG", quality=85)
        return ImageData(
            url="data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode(), orig_name="frame.jpg"
        )

    component.postprocess = postprocess  # type: ignore[method-assign]
    return component


def result_output(cache_dir: Path, **kwargs: Any) -> gr.Image:
    """A PNG ``gr.Image`` output written atomically: Gradio names a result file after its content
    and rewrites it in place, so two requests with the same result (the same photo and settings)
    could serve each other a half-written file."""
    component = gr.Image(format="png", interactive=False, **kwargs)

    def postprocess(value: Any) -> ImageData | None:
        if value is None:
            return None
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        data = buffer.getvalue()
        folder = cache_dir / hashlib.sha256(data).hexdigest()
        target = folder / "stylized.png"
        with _FOLDER_LOCK:  # the upload sweep must not remove the folder before the file is in
            folder.mkdir(parents=True, exist_ok=True)
            if target.exists():
                os.utime(target)  # results are deleted by age: this one was just handed out again
            else:
                fd, temp = tempfile.mkstemp(dir=folder, prefix=".stylized.", suffix=".png")
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(temp, target)
        return ImageData(path=str(target), orig_name=target.name)

    component.postprocess = postprocess  # type: ignore[method-assign]
    return component


def limits_text(settings: AppSettings) -> str:
    return (
        f"Photos up to {settings.max_upload_mb:g} MB and {settings.max_megapixels:g} MP; above 4 MP the "
        f"network paints in tiles. Uploads are deleted once read, results after {settings.result_minutes:g} min."
    )


def build_demo(service: StyleService, settings: AppSettings) -> gr.Blocks:
    names = service.names
    ttl = max(1, round(settings.result_minutes * 60))
    temp_root = Path(os.environ["GRADIO_TEMP_DIR"]).resolve()
    reader = UploadReader(service, temp_root, keep_s=ttl)

    @guarded
    def stylize_photo(photo, style, strength, preserve_color, stroke_scale, output_size):
        """Stylize a photo with one of the configured styles; returns (image, a line about it)."""
        if photo is None:
            raise FastStyleError("upload or paste a photo first")
        if output_size not in OUTPUT_SIZES:
            raise FastStyleError(f"output size must be one of {', '.join(OUTPUT_SIZES)}")
        side = None if output_size == "original" else int(output_size)
        result, seconds = service.stylize(photo, style, strength, preserve_color, stroke_scale, side)
        return result, f"{result.width}×{result.height} px · {style} · {seconds:.2f} s"

    @guarded
    def stylize_frame(frame, style, strength, preserve_color, stroke_scale, frame_size, clock):
        """One webcam frame; ``clock`` (per browser session) holds recent frame times for the fps."""
        if frame is None:
            return None, "", clock
        if frame_size not in WEBCAM_SIZES:
            raise FastStyleError(f"frame size must be one of {', '.join(map(str, WEBCAM_SIZES))}")
        side = min(int(frame_size), max(frame.size))
        result, seconds = service.stylize(frame, style, strength, preserve_color, stroke_scale, side)
        times = [*(clock or [])[-(FPS_WINDOW - 1) :], time.monotonic()]
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        text = f"**{fps:.1f} fps** · network {seconds * 1000:.0f} ms per frame · {result.width}×{result.height} px"
        return result, text, times

    with gr.Blocks(title="fast-style", analytics_enabled=False, delete_cache=(min(60, ttl), ttl)) as demo:
        gr.Markdown("## fast-style · paint a photo in one pass")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=260):
                style = gr.Dropdown(names, value=names[0], label="Style", elem_id="style")
                strength = gr.Slider(0, 1, value=1, step=0.05, label="Strength", info="0 = the photo, 1 = full style")
                preserve = gr.Checkbox(False, label="Preserve colours", info="keep the photo's colours")
                scale = gr.Slider(
                    *STROKE_SCALE,
                    value=1,
                    step=0.05,
                    label="Stroke scale",
                    info="the network paints at this multiple of the size: above 1 finer strokes, below 1 bolder",
                )
                gr.Markdown(limits_text(settings), elem_id="limits")
            with gr.Column(scale=3):
                with gr.Tab("Photo"):
                    with gr.Row():
                        photo = image_input(reader, sources=["upload", "clipboard"], label="Photo", elem_id="photo")
                        result = result_output(
                            temp_root, label="Stylized", buttons=["download", "fullscreen"], elem_id="result"
                        )
                    with gr.Row():
                        size = gr.Dropdown(
                            list(OUTPUT_SIZES), value="original", label="Output size (longer side, px)", scale=1
                        )
                        run = gr.Button("Stylize", variant="primary", elem_id="stylize", scale=1)
                    info = gr.Markdown(elem_id="info")
                with gr.Tab("Webcam"):
                    with gr.Row():
                        cam = image_input(reader, sources=["webcam"], streaming=True, label="Webcam", elem_id="webcam")
                        live = frame_output(label="Stylized stream", elem_id="live")
                    frame_size = gr.Dropdown(
                        list(WEBCAM_SIZES),
                        value=min(WEBCAM_SIZES, key=lambda s: abs(s - settings.webcam_size)),
                        label="Frame size (longer side, px)",
                    )
                    fps = gr.Markdown(elem_id="fps")
                    clock = gr.State([])
        run.click(
            stylize_photo,
            [photo, style, strength, preserve, scale, size],
            [result, info],
            api_name="stylize",
            concurrency_id="stylize",
        )
        cam.stream(
            stylize_frame,
            [cam, style, strength, preserve, scale, frame_size, clock],
            [live, fps, clock],
            api_name="stylize_frame",
            api_visibility="undocumented",
            stream_every=0.05,
            time_limit=None,
            concurrency_id="webcam",
            show_progress="hidden",
        )
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.max_queue)
    return demo


@dataclass
class RunningApp:
    demo: gr.Blocks
    service: StyleService
    url: str
    temp_dir: Path
    _old_temp: str | None

    def close(self) -> None:
        try:
            self.demo.close()
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            if self._old_temp is None:
                os.environ.pop("GRADIO_TEMP_DIR", None)
            else:
                os.environ["GRADIO_TEMP_DIR"] = self._old_temp


def serve(settings: AppSettings, service: StyleService | None = None, block: bool = True) -> RunningApp:
    """Load the models (unless ``service`` is given) and start the server. ``block=True`` serves
    until Ctrl+C and then cleans up; ``block=False`` returns the running app (tests)."""
    if service is None:
        service = StyleService(
            settings.models, settings.device, settings.precision, settings.max_pixels, settings.max_upload_bytes
        )
    old_temp = os.environ.get("GRADIO_TEMP_DIR")
    temp_dir = Path(tempfile.mkdtemp(prefix="fast_style_app_"))  # private (0700), removed on close
    os.environ["GRADIO_TEMP_DIR"] = str(temp_dir)
    try:
        demo = build_demo(service, settings)
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            share=False,
            auth=list(settings.auth) or None,
            max_file_size=settings.max_upload_bytes,
            show_error=False,
            prevent_thread_lock=True,
            quiet=True,
            footer_links=["api"],
            run_history=False,
            enable_monitoring=False,
            mcp_server=False,
            ssr_mode=False,
            pwa=False,
            css=CSS,
        )
    except OSError as exc:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise FastStyleError(
            f"cannot serve on {settings.host}:{settings.port} ({' '.join(str(exc).split())}): "
            "pass another port=, or stop what uses it"
        ) from None
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{demo.server_port}/"
    app = RunningApp(demo, service, url, temp_dir, old_temp)
    if not block:
        return app
    print(f"serving {len(service.names)} styles ({', '.join(service.names)}) at {url}  (Ctrl+C stops)", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl+C
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        app.close()
    return app


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
