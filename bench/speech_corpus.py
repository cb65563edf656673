"""Real recordings of speech with their transcripts: Debian's Asterisk core sounds (English).

``asterisk-core-sounds-en-wav`` 1.6.1-1 holds ~360 prompts spoken by one person (Allison Smith,
CC-BY-SA-3.0), 8 kHz mono WAV: telephone prompts, many of several sentences or clauses with the
speaker's own pauses between them; ``asterisk-core-sounds-en`` 1.6.1-1 holds their transcripts
(``core-sounds-en.txt``). Both are fetched with ``apt-get download`` at the pinned version into
the cache (no root install, nothing committed) and unpacked with ``dpkg-deb``.
"""

from __future__ import annotations

import gzip
import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from huma_rt.errors import MissingDependencyError

log = logging.getLogger(__name__)

VERSION = "1.6.1-1"
PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en")
_SOUNDS = "usr/share/asterisk/sounds/en_US_f_Allison"
_TRANSCRIPTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    path: Path


def corpus_dir(root: Path | None = None) -> Path:
    """Fetch and unpack both packages once; returns the folder they were unpacked into."""
    from huma_rt.speech.tts import cache_root

    out = (root or cache_root() / "media") / f"asterisk-sounds-{VERSION}"
    if (out / _TRANSCRIPTS).is_file() and (out / _SOUNDS).is_dir():
        return out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for pkg in PACKAGES:
            try:
                subprocess.run(["apt-get", "download", f"{pkg}={VERSION}"], cwd=tmp, check=True,
                               capture_output=True, text=True)  # fmt: skip
            except (OSError, subprocess.CalledProcessError) as exc:
                detail = getattr(exc, "stderr", "") or exc
                raise MissingDependencyError(
                    f"could not download the Debian package {pkg}={VERSION} (real speech recordings): "
                    f"{str(detail).strip()[-300:]}; run 'apt-get update' first"
                ) from exc
        for deb in sorted(Path(tmp).glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    return out


def prompts(root: Path | None = None) -> list[Prompt]:
    """Every prompt that has a recording and a spoken transcript (tones and beeps left out)."""
    base = corpus_dir(root)
    out: list[Prompt] = []
    for line in gzip.open(base / _TRANSCRIPTS, "rt", encoding="utf-8", errors="replace"):
        if ":" not in line or line.startswith(";"):
            continue
        name, text = (s.strip() for s in line.split(":", 1))
        wav = base / _SOUNDS / f"{name}.wav"
        if text and not text.startswith("[") and wav.is_file():
            out.append(Prompt(name, text, wav))
    return out


def load_16k(prompt: Prompt) -> np.ndarray:
    """The recording as 16 kHz mono float32."""
    from huma_rt.speech.audio import read_wav, resample

    pcm, rate = read_wav(prompt.path)
    return resample(pcm, rate)


def speech_end(pcm: np.ndarray, rate: int = 16000, floor_db: float = -35.0) -> int:
    """Sample where the recording's speech ends: the last 10 ms block louder than ``floor_db``
    relative to the loudest block (the prompts are trimmed studio recordings)."""
    block = rate // 100
    n = pcm.size // block
    rms = np.sqrt(np.mean(pcm[: n * block].reshape(n, block).astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > floor_db)[0]
    return int((loud[-1] + 1) * block) if loud.size else 0
