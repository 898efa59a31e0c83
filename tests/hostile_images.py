"""A generated corpus of broken and odd image files, for the hostile-data tests.

``write_hostile_corpus`` returns the files it wrote in two lists: ``bad`` ones no decoder can read
(zero-byte, truncated, not an image, a decompression bomb) and ``odd`` ones that are valid but
unusual (grayscale, CMYK, RGBA, palette, 16-bit, float, EXIF-rotated, tiny, wrong extension, ...),
which must decode to RGB. Every kind is generated several times with different sizes and seeds.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(array: np.ndarray, bit_depth: int, color_type: int) -> bytes:
    """A minimal PNG encoder (Pillow cannot write 16-bit RGB): ``array`` is (H, W) or (H, W, C)."""
    height, width = array.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = array.astype(dtype).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(rng: np.random.Generator, width: int, height: int, channels: int = 3) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def write_hostile_corpus(folder: Path, copies: int = 10, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Write ``copies`` files of each bad kind and each odd kind into ``folder``; return (bad, odd).

    With the default 10 copies: 120 bad files (12 kinds) and 130 odd ones (13 kinds).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)

    def size() -> tuple[int, int]:
        return pyrng.randint(24, 64), pyrng.randint(24, 64)

    def jpeg() -> bytes:
        return encoded(Image.fromarray(noise(rng, *size())), "JPEG", quality=90)

    def png() -> bytes:
        return encoded(Image.fromarray(noise(rng, *size())), "PNG")

    def cut(data: bytes) -> bytes:  # keep the header, lose most of the pixels
        return data[: max(40, int(len(data) * pyrng.uniform(0.2, 0.6)))]

    def bomb() -> bytes:  # claims 100000 x 100000 pixels: Pillow refuses before allocating
        data = png_bytes(np.zeros((1, 1), np.uint8), 8, 0)
        return data[:16] + struct.pack(">II", 100_000, 100_000) + data[24:]

    bad_kinds: dict[str, Callable[[], bytes]] = {
        "zero_byte.jpg": lambda: b"",
        "zero_byte.png": lambda: b"",
        "truncated.jpg": lambda: cut(jpeg()),
        "truncated.png": lambda: cut(png()),
        "text.jpg": lambda: b"this is not an image, just a note\n" * pyrng.randint(1, 20),
        "html.png": lambda: b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
        "random_bytes.jpg": lambda: rng.integers(0, 256, pyrng.randint(10, 5000), dtype=np.uint8).tobytes(),
        "jpeg_magic_only.jpg": lambda: b"\xff\xd8\xff\xe0" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes(),
        "png_header_only.png": lambda: png()[:33],
        "bad_crc.png": lambda: png()[:30] + b"\x00\x00\x00\x00" + png()[34:],
        "bomb.png": bomb,
        "gif_header_only.gif": lambda: b"GIF89a\x10\x00\x10\x00",
    }

    def exif_rotated() -> bytes:
        exif = Image.Exif()
        exif[0x0112] = pyrng.choice([3, 5, 6, 7, 8])  # orientation: rotated and/or mirrored
        return encoded(Image.fromarray(noise(rng, *size())), "JPEG", exif=exif.tobytes())

    def palette() -> bytes:
        image = Image.fromarray(noise(rng, *size())).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        return encoded(image, "PNG", transparency=0)

    def sixteen_bit_rgb() -> bytes:
        w, h = size()
        return png_bytes(rng.integers(0, 65536, (h, w, 3)), 16, 2)

    def sixteen_bit_gray() -> bytes:
        w, h = size()
        return png_bytes(rng.integers(0, 65536, (h, w)), 16, 0)

    def tiny() -> bytes:
        w, h = pyrng.choice([(1, 1), (1, 2), (3, 1), (2, 2), (1, 200), (200, 1)])
        return encoded(Image.fromarray(noise(rng, w, h)), "PNG")

    odd_kinds: dict[str, Callable[[], bytes]] = {
        "grayscale.jpg": lambda: encoded(Image.fromarray(noise(rng, *size(), channels=1)), "JPEG"),
        "cmyk.jpg": lambda: encoded(Image.fromarray(noise(rng, *size(), channels=4), "CMYK"), "JPEG"),
        "rgba.png": lambda: encoded(Image.fromarray(noise(rng, *size(), channels=4), "RGBA"), "PNG"),
        "gray_alpha.png": lambda: encoded(Image.fromarray(noise(rng, *size(), channels=2), "LA"), "PNG"),
        "palette.png": palette,
        "gray16.png": sixteen_bit_gray,
        "rgb16.png": sixteen_bit_rgb,
        "float.tif": lambda: encoded(Image.fromarray(rng.random(size()[::-1]).astype(np.float32), "F"), "TIFF"),
        "exif_rotated.jpg": exif_rotated,
        "tiny.png": tiny,
        "bilevel.bmp": lambda: encoded(Image.fromarray(noise(rng, *size())).convert("1"), "BMP"),
        "png_named.jpg": png,  # wrong extension: decoders go by content
        "animated.gif": lambda: encoded(
            Image.fromarray(noise(rng, 32, 32)).convert("P"),
            "GIF",
            save_all=True,
            append_images=[Image.fromarray(noise(rng, 32, 32)).convert("P")],
        ),
    }
    bad, odd = [], []
    for kinds, out in ((bad_kinds, bad), (odd_kinds, odd)):
        for name, make in kinds.items():
            stem, suffix = name.rsplit(".", 1)
            for i in range(copies):
                path = folder / f"{stem}_{i:03d}.{suffix}"
                path.write_bytes(make())
                out.append(path)
    return bad, odd
