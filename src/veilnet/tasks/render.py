"""Pictures of text that the validator draws itself, so it knows what they say (pure given the rng).

OCR challenges are a few lines of random text (words of every case, numbers, prices, dates, codes,
punctuation); orientation challenges are pages of wrapped prose turned by a multiple of 90 degrees. Both
draw with the DejaVu subsets shipped in ``tasks/data/fonts`` (never the system's fonts, so every validator
draws the same glyphs), in random sizes and colours, slightly rotated, with sensor-like noise and blur.
"""

from __future__ import annotations

import functools
import random
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["FONT_DIR", "Look", "font_files", "random_lines", "random_look", "render_page", "render_text"]

FONT_DIR = Path(__file__).resolve().parent / "data" / "fonts"


@functools.cache
def font_files() -> tuple[Path, ...]:
    return tuple(sorted(FONT_DIR.glob("*.ttf")))


@functools.lru_cache(maxsize=256)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


@dataclass(frozen=True)
class Look:
    """How one picture is drawn."""

    font: Path
    size: int
    ink: tuple[int, int, int]
    paper: tuple[int, int, int]
    tilt: float  # degrees, counter-clockwise
    noise: float  # standard deviation of added Gaussian noise, in 0-255 levels
    blur: float  # Gaussian blur radius in pixels


def random_look(rng: random.Random, sizes: tuple[int, int]) -> Look:
    """Dark ink on light paper (light on dark one time in eight), always at least ~90 levels apart."""
    dark = tuple(rng.randint(0, 90) for _ in range(3))
    light = tuple(rng.randint(180, 255) for _ in range(3))
    ink, paper = (light, dark) if rng.random() < 0.125 else (dark, light)
    return Look(font=rng.choice(font_files()), size=rng.randint(*sizes), ink=ink, paper=paper,  # type: ignore[arg-type]
                tilt=rng.uniform(-2.5, 2.5), noise=rng.uniform(0.0, 10.0), blur=rng.uniform(0.0, 0.7))


_CODES = ("INV", "REF", "NO", "ID", "SKU", "PO", "TX", "LOT")
_PUNCTUATION = ",.;:!?"


def _token(rng: random.Random, vocabulary: tuple[str, ...]) -> str:
    kind = rng.random()
    if kind < 0.62:
        word = rng.choice(vocabulary)
        case = rng.random()
        word = word.capitalize() if case < 0.25 else word.upper() if case < 0.33 else word.lower()
        return word + (rng.choice(_PUNCTUATION) if rng.random() < 0.15 else "")
    if kind < 0.75:
        return str(rng.randint(0, 10 ** rng.randint(1, 6)))
    if kind < 0.82:
        return f"${rng.randint(0, 9999)}.{rng.randint(0, 99):02d}"
    if kind < 0.89:
        year, month, day = rng.randint(1950, 2049), rng.randint(1, 12), rng.randint(1, 28)
        return f"{year}-{month:02d}-{day:02d}" if rng.random() < 0.5 else f"{day:02d}/{month:02d}/{year}"
    if kind < 0.95:
        return f"{rng.choice(_CODES)}-{rng.randint(10, 99999)}"
    return f"({rng.choice(vocabulary).lower()})"


def random_lines(rng: random.Random, vocabulary: tuple[str, ...], *, lines: tuple[int, int] = (1, 4),
                 tokens: tuple[int, int] = (1, 7)) -> str:
    """A few lines of random words, numbers, prices, dates and codes, joined by newlines."""
    return "\n".join(" ".join(_token(rng, vocabulary) for _ in range(rng.randint(*tokens)))
                     for _ in range(rng.randint(*lines)))


def _finish(picture: Image.Image, look: Look, rng: random.Random) -> Image.Image:
    picture = picture.rotate(look.tilt, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=look.paper)
    if look.noise > 0:
        pixels = np.asarray(picture, dtype=np.float32)
        noise = np.random.default_rng(rng.getrandbits(64)).normal(0.0, look.noise, size=pixels.shape)
        picture = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
    if look.blur > 0.05:
        picture = picture.filter(ImageFilter.GaussianBlur(look.blur))
    return picture


def _draw(text: str, look: Look, margin: int, spacing: int) -> Image.Image:
    font = _font(look.font, look.size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = (round(v) for v in probe.multiline_textbbox((0, 0), text, font=font, spacing=spacing))
    picture = Image.new("RGB", (right - left + 2 * margin, bottom - top + 2 * margin), look.paper)
    ImageDraw.Draw(picture).multiline_text((margin - left, margin - top), text, font=font, fill=look.ink,
                                           spacing=spacing)
    return picture


def render_text(text: str, rng: random.Random, *, sizes: tuple[int, int] = (16, 40)) -> Image.Image:
    """``text`` (lines separated by newlines) drawn in a random look."""
    look = random_look(rng, sizes)
    picture = _draw(text, look, margin=rng.randint(8, 40), spacing=rng.randint(look.size // 4, look.size // 2 + 2))
    return _finish(picture, look, rng)


def render_page(prose: str, rng: random.Random, *, sizes: tuple[int, int] = (12, 26)) -> Image.Image:
    """A page of ``prose`` wrapped to a random width, drawn upright in a random look."""
    look = random_look(rng, sizes)
    columns = rng.randint(28, 70)
    body = "\n".join(textwrap.wrap(prose, columns))
    picture = _draw(body, look, margin=rng.randint(16, 60), spacing=rng.randint(2, look.size // 2 + 2))
    return _finish(picture, look, rng)
