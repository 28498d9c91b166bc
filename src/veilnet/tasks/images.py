"""Images on the wire: data URLs or bare base64 in, a decoded RGB picture out, under size and pixel limits.

Image tasks (OCR, orientation) take images inline only. A remote URL is refused, never fetched: a miner or
gateway that fetched URLs on a caller's behalf could be pointed at internal addresses, and its answer would
depend on what a third party served at that moment. Pillow decodes; this module bounds what it is given
(encoded bytes before decoding, pixels from the header before the pixel data is read) so a hostile image
cannot exhaust memory, and turns every way an image can be unusable into :class:`InvalidRequest` /
:class:`PayloadTooLarge` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from veilnet.errors import InvalidRequest, PayloadTooLarge

__all__ = ["ImageLimits", "decode_image", "png_data_url"]

_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.ASCII)
_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"}


@dataclass(frozen=True)
class ImageLimits:
    """What one inline image may be: encoded size in bytes, and width x height in pixels."""

    max_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 16_000_000
    min_side: int = 8


def _payload(value: str, param: str) -> str:
    """The base64 text of a data URL (or of bare base64)."""
    text = value.strip()
    if text[:8].lower().startswith(("http://", "https://", "ftp://", "file:")):
        raise InvalidRequest("remote image URLs are not fetched; send the image inline as a data URL "
                             "(data:image/png;base64,...) or base64", param=param, code="remote_image_refused")
    if text[:5].lower() != "data:":
        return text
    match = _DATA_URL.match(text)
    if match is None:
        raise InvalidRequest("malformed data URL (expected data:image/<type>;base64,<data>)", param=param)
    if match.group("mime") and not match.group("mime").lower().startswith("image/"):
        raise InvalidRequest(f"data URL holds {match.group('mime')}, not an image", param=param)
    if not match.group("b64"):
        raise InvalidRequest("data URL is not base64-encoded (add ;base64)", param=param)
    return text[match.end():]


def decode_image(value: str, *, param: str, limits: ImageLimits | None = None) -> Image.Image:
    """The RGB image in ``value`` (a data URL or bare base64). ``param`` names the field in errors."""
    limits = limits or ImageLimits()
    payload = _payload(value, param)
    if len(payload) > (limits.max_bytes * 4) // 3 + 4:
        raise PayloadTooLarge(f"image is over {limits.max_bytes} bytes", param=param)
    try:
        raw = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"image is not valid base64: {exc}", param=param) from exc
    if not raw:
        raise InvalidRequest("image is empty", param=param)
    try:
        picture = Image.open(io.BytesIO(raw))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard, from the header (the warning is raised where warnings are errors)
        raise PayloadTooLarge(f"image has too many pixels: {exc}", param=param) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidRequest(f"image cannot be decoded: {exc}", param=param) from exc
    try:
        width, height = picture.size  # from the header: nothing decoded yet
        if picture.format not in _FORMATS:
            raise InvalidRequest(f"image format {picture.format} is not accepted "
                                 f"({', '.join(sorted(_FORMATS))})", param=param)
        if width * height > limits.max_pixels:
            raise PayloadTooLarge(f"image is {width}x{height} pixels; at most {limits.max_pixels} pixels",
                                  param=param)
        if min(width, height) < limits.min_side:
            raise InvalidRequest(f"image is {width}x{height} pixels; each side must be at least "
                                 f"{limits.min_side}", param=param)
        picture.seek(0)
        return _flatten(picture)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidRequest(f"image cannot be decoded: {exc}", param=param) from exc


def _flatten(picture: Image.Image) -> Image.Image:
    """RGB; transparent parts become white (as a page shows them), not black."""
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return picture.convert("RGB")


def png_data_url(picture: Image.Image) -> str:
    """``picture`` as a PNG data URL (how validators send the images they render)."""
    buffer = io.BytesIO()
    # compress level 1: ~5x faster to encode than 6, ~10 % larger
    picture.save(buffer, format="PNG", optimize=False, compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
