"""Type by content (gateway/uploads/sniff.py): real files of every accepted type made by ffmpeg
are recognised, each only as itself; look-alikes and other files are not."""

from __future__ import annotations

import pytest

from gateway.uploads import sniff


def test_every_real_sample_is_recognised_as_its_own_type(samples) -> None:
    assert set(samples) == set(sniff.TYPES)
    for kind, data in samples.items():
        assert sniff.sniff(data[:sniff.SNIFF_BYTES]) == kind, kind


@pytest.mark.parametrize("head", [
    b"", b"hello world, this is text", b"%PDF-1.7\n", b"GIF89a\x01\x00", b"PK\x03\x04zipfile",
    b"RIFF\x00\x00\x00\x00AVI LIST", b"OggS\x00\x02" + b"\x00" * 22 + b"\x01vorbis",  # Ogg, not Opus
    b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01matroska", b"\xff\xf1\x50\x80",  # Matroska; ADTS AAC
    b"\x00\x00\x00\x18ftypqt  ",  # QuickTime, not an audio brand
])
def test_other_files_are_not_taken(head: bytes) -> None:
    assert sniff.sniff(head) is None


@pytest.mark.parametrize(("header", "kind"), [
    ("image/jpeg", "image/jpeg"), ("IMAGE/JPEG", "image/jpeg"), ("image/jpg", "image/jpeg"),
    ("audio/webm;codecs=opus", "audio/webm"), ("audio/ogg; codecs=opus", "audio/ogg"),
    ("audio/x-wav", "audio/wav"), ("audio/x-m4a", "audio/mp4"), ("audio/mp3", "audio/mpeg"),
    ("text/plain", None), ("application/octet-stream", None), ("video/mp4", None), ("", None),
    (None, None),
])
def test_declared_types(header: str | None, kind: str | None) -> None:
    assert sniff.declared(header) == kind


def test_a_photo_declared_as_audio_disagrees(samples) -> None:
    head = samples["image/jpeg"][:sniff.SNIFF_BYTES]
    assert sniff.sniff(head) != sniff.declared("audio/ogg")

