"""Post-processing that mixes the stylized image with the photo: strength and colour preservation.

Tensors are RGB ``(3, H, W)`` or ``(B, 3, H, W)`` float in [0, 1]; the content and stylized images
have the same shape. Work happens in bands of rows, in place, so an 8K image needs no extra copies.
"""

from __future__ import annotations

import torch

# BT.601 luma weights (the Y of JPEG's YCbCr).
LUMA = (0.299, 0.587, 0.114)
ROWS_PER_BAND = 256


def luma(image: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` RGB -> ``(..., 1, H, W)`` luma Y, on the same [0, 1] scale."""
    r, g, b = image.unbind(-3)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(-3)


def chroma(image: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` RGB -> ``(..., 2, H, W)`` (Cb, Cr) of full-range YCbCr, centred on 0."""
    y = luma(image)
    return torch.cat([(image[..., 2:3, :, :] - y) * 0.564, (image[..., 0:1, :, :] - y) * 0.713], dim=-3)


def blend_into(
    styled: torch.Tensor, content: torch.Tensor, strength: float = 1.0, preserve_color: bool = False
) -> torch.Tensor:
    """Overwrite ``styled`` with the final image and return it.

    ``preserve_color``: keep the photo's Cb/Cr and take the stylized luma. YCbCr -> RGB is linear
    and moving only Y moves R, G and B by the same amount, so that is ``content + (Y_s - Y_c)``.
    ``strength`` in [0, 1]: ``content + strength * (result - content)``; 0 gives the photo back
    exactly, 1 the full effect. The result is clamped to [0, 1].
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    height = styled.shape[-2]
    for top in range(0, height, ROWS_PER_BAND):
        out = styled[..., top : top + ROWS_PER_BAND, :]
        photo = content[..., top : top + ROWS_PER_BAND, :]
        if preserve_color:
            out.copy_(photo + (luma(out) - luma(photo)))
        if strength < 1.0:
            out.copy_(torch.lerp(photo, out, strength))
        out.clamp_(0.0, 1.0)
    return styled
