"""Parsing an SPDM GET_MEASUREMENTS exchange, as NVIDIA GPUs return it for attestation.

Written by hand: no maintained Python library parses SPDM messages (libspdm is C; NVIDIA's verifier embeds its
own parser), and the format is small. Layout (DMTF DSP0274, SPDM 1.1+):

- request (37 bytes): version, code 0xE0, param1 (bit 0: signature requested), param2 (measurement
  operation), the requester's 32-byte nonce, the slot id;
- response: version, code 0x60, param1, param2, number of blocks (1), measurement record length (3, LE),
  the record (blocks: index, specification (1 = DMTF), size (2, LE), then the DMTF value: type (1),
  size (2, LE), value), the responder's nonce (32), opaque data length (2, LE), opaque data (NVIDIA: type
  (2, LE), size (2, LE), value, repeated), then the signature over every byte before it.

The signature's place comes from these lengths, never from the end of the buffer: bytes after the signature
are not signed, so they are ignored (NVML may hand over a padded buffer).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from veilnet.confidential.errors import EvidenceMalformed

__all__ = ["REQUEST_BYTES", "SpdmMeasurements", "parse_measurements"]

REQUEST_BYTES = 37
_GET_MEASUREMENTS = 0xE0
_MEASUREMENTS = 0x60
_DMTF_SPECIFICATION = 0x01
_SIGNATURE_REQUESTED = 0x01


@dataclass(frozen=True)
class SpdmMeasurements:
    """One parsed exchange. ``signed`` is every byte the signature covers; ``blocks``: index -> DMTF value."""

    version: int
    requester_nonce: bytes
    blocks: dict[int, bytes]
    opaque: dict[int, bytes]
    signed: bytes
    signature: bytes
    trailing: int  # unsigned bytes after the signature (ignored)


class _Reader:
    def __init__(self, data: bytes, at: int, what: str) -> None:
        self.data, self.at, self.what = data, at, what

    def take(self, size: int, field: str) -> bytes:
        end = self.at + size
        if end > len(self.data):
            raise EvidenceMalformed(f"{self.what}: truncated in {field} (needs {end} bytes, has {len(self.data)})")
        value = self.data[self.at:end]
        self.at = end
        return value

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "little")


def _request(report: bytes) -> tuple[int, bytes]:
    if len(report) < REQUEST_BYTES:
        raise EvidenceMalformed(f"GPU report is {len(report)} bytes: shorter than its SPDM request")
    version, code, param1 = report[0], report[1], report[2]
    if code != _GET_MEASUREMENTS:
        raise EvidenceMalformed(f"GPU report does not start with an SPDM GET_MEASUREMENTS request (code {code:#x})")
    if not param1 & _SIGNATURE_REQUESTED:
        raise EvidenceMalformed("the GPU report's SPDM request did not ask for a signature")
    return version, report[4:36]


def _blocks(record: bytes, count: int) -> dict[int, bytes]:
    reader, blocks = _Reader(record, 0, "GPU measurement record"), {}
    for _ in range(count):
        index = reader.uint(1, "block index")
        specification = reader.uint(1, "measurement specification")
        block = _Reader(reader.take(reader.uint(2, "block size"), "block"), 0, f"GPU measurement block {index}")
        if specification != _DMTF_SPECIFICATION:
            raise EvidenceMalformed(f"GPU measurement block {index} is not a DMTF measurement ({specification})")
        block.uint(1, "value type")
        value = block.take(block.uint(2, "value size"), "value")
        if block.at != len(block.data):
            raise EvidenceMalformed(f"GPU measurement block {index} has bytes after its value")
        if index in blocks:
            raise EvidenceMalformed(f"GPU measurement block {index} appears twice")
        blocks[index] = value
    if reader.at != len(record):
        raise EvidenceMalformed("GPU measurement record is longer than its blocks")
    return blocks


def _opaque(data: bytes) -> dict[int, bytes]:
    reader, fields = _Reader(data, 0, "GPU opaque data"), {}
    while reader.at < len(data):
        kind, size = struct.unpack("<HH", reader.take(4, "field header"))
        fields[kind] = reader.take(size, f"field {kind}")
    return fields


def parse_measurements(report: bytes, signature_bytes: int) -> SpdmMeasurements:
    """The request and MEASUREMENTS response in ``report``; EvidenceMalformed for anything inconsistent."""
    version, nonce = _request(report)
    reader = _Reader(report, REQUEST_BYTES, "GPU SPDM response")
    response_version, code = reader.uint(1, "version"), reader.uint(1, "code")
    if code != _MEASUREMENTS:
        raise EvidenceMalformed(f"GPU SPDM response is not MEASUREMENTS (code {code:#x})")
    if response_version != version:
        raise EvidenceMalformed(f"GPU SPDM response version {response_version:#x} is not the request's {version:#x}")
    reader.take(2, "params")
    count = reader.uint(1, "number of blocks")
    blocks = _blocks(reader.take(reader.uint(3, "record length"), "measurement record"), count)
    reader.take(32, "responder nonce")
    opaque = _opaque(reader.take(reader.uint(2, "opaque data length"), "opaque data"))
    signed_end = reader.at
    signature = reader.take(signature_bytes, "signature")
    return SpdmMeasurements(version=version, requester_nonce=nonce, blocks=blocks, opaque=opaque,
                            signed=report[:signed_end], signature=signature, trailing=len(report) - reader.at)
