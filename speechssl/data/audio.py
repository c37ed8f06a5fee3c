"""Audio I/O: the one audio loader of the toolkit, through soundfile (wav, flac, ogg).

Policy:
- Samples come back as float32 mono in [-1, 1].
- Multichannel audio is mixed down by averaging the channels (``channel=None``), or one channel is
  picked with ``channel=k``. Averaging keeps the level of a centred (identical-channel) source.
- A sample rate other than the expected one is an error unless ``resample=True`` (soxr, high
  quality). Training data should be at one rate; ``speechssl transcribe`` resamples.
- Missing, unreadable, empty, truncated and NaN-containing files raise :class:`AudioError` naming
  the utterance id (when known) and the path.
"""

from __future__ import annotations

import os
import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import soundfile as sf

from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_path

SAMPLE_RATE = 16000


class AudioError(SpeechSSLError, RuntimeError):
    """An audio file cannot be used; the message names the utterance, the path and a fix."""


def _where(path: str, utt_id: str | None) -> str:
    return f"utterance '{utt_id}' ({path})" if utt_id else str(path)


def _check_complete(path: str, info: sf.SoundFile, utt_id: str | None) -> None:
    """libsndfile reads a truncated WAV/FLAC without complaint, returning fewer frames than its
    header promises; compare the data chunk size with the file size for WAV."""
    if info.format != "WAV" or not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(4096)
    pos = head.find(b"data")
    if pos < 0 or pos + 8 > len(head):
        return
    declared = int.from_bytes(head[pos + 4 : pos + 8], "little")
    present = os.path.getsize(path) - (pos + 8)
    # 0xFFFFFFFF / 0 are used by streaming writers for "unknown length"
    if declared not in (0, 0xFFFFFFFF) and present < declared:
        raise AudioError(
            f"{_where(path, utt_id)}: truncated file, header declares {declared} data bytes but "
            f"only {present} are present; re-create or re-download it"
        )


def read_pipe(command: str, utt_id: str | None = None) -> bytes:
    """Run a ``wav.scp`` pipe command (``cmd args |``) and return its stdout bytes."""
    cmd = command.rstrip()
    cmd = cmd[:-1] if cmd.endswith("|") else cmd
    try:
        # A pipe entry is a shell command by definition; callers reach here only after an
        # explicit opt-in (allow_pipes=True).
        proc = subprocess.run(cmd, shell=True, capture_output=True, check=False)  # noqa: S602
    except OSError as e:
        raise AudioError(f"{_where(command, utt_id)}: cannot run pipe: {e}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        raise AudioError(
            f"{_where(command, utt_id)}: pipe command exited with {proc.returncode}: {err}"
        )
    return proc.stdout


def load_audio(
    source: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    *,
    utt_id: str | None = None,
    resample: bool = False,
    channel: int | None = None,
    start: float = 0.0,
    end: float | None = None,
    allow_pipes: bool = False,
) -> np.ndarray:
    """Load ``source`` (a path, or a ``cmd |`` pipe with ``allow_pipes``) as float32 mono.

    Args:
        sample_rate: the rate expected (and, with ``resample``, produced).
        utt_id: named in error messages.
        channel: pick this channel instead of averaging all of them.
        start, end: a segment in seconds (``segments`` files); ``end=None`` reads to the end.
    Returns:
        ``(num_samples,)`` float32 array.
    """
    source = str(source)
    if source.rstrip().endswith("|"):
        if not allow_pipes:
            raise AudioError(
                f"{_where(source, utt_id)}: wav.scp entry is a shell pipe; pipes run commands, so "
                "they need an explicit opt-in (--allow-pipes), or convert the audio to files first"
            )
        fileobj: str | BytesIO = BytesIO(read_pipe(source, utt_id))
    else:
        if not os.path.exists(source):
            raise AudioError(
                f"{_where(source, utt_id)}: audio file not found; fix the path in wav.scp "
                "or drop the utterance with `speechssl data fix`"
            )
        if os.path.getsize(source) == 0:
            raise AudioError(f"{_where(source, utt_id)}: empty file (0 bytes)")
        fileobj = source
    try:
        with sf.SoundFile(fileobj) as f:
            if not isinstance(fileobj, BytesIO):
                _check_complete(source, f, utt_id)
            sr = f.samplerate
            first = int(round(start * sr))
            if first:
                f.seek(first)
            frames = -1 if end is None else max(0, int(round(end * sr)) - first)
            data = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(
            f"{_where(source, utt_id)}: cannot decode audio ({e}); the file is corrupt or not "
            "wav/flac/ogg — convert it (e.g. with sox or ffmpeg)"
        ) from None
    if data.shape[0] == 0:
        raise AudioError(f"{_where(source, utt_id)}: no samples (empty audio or empty segment)")
    if channel is not None:
        if not 0 <= channel < data.shape[1]:
            raise AudioError(
                f"{_where(source, utt_id)}: channel {channel} requested, file has {data.shape[1]}"
            )
        wav = data[:, channel]
    else:
        wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wav).all():
        raise AudioError(f"{_where(source, utt_id)}: contains NaN or Inf samples")
    if sr != sample_rate:
        if not resample:
            raise AudioError(
                f"{_where(source, utt_id)}: sample rate {sr} Hz, expected {sample_rate} Hz; "
                f"resample the corpus (e.g. `sox in.wav -r {sample_rate} out.wav`) or pass "
                "--resample"
            )
        wav = resample_audio(wav, sr, sample_rate)
    return np.ascontiguousarray(wav, dtype=np.float32)


def resample_audio(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality resampling (soxr, the resampler librosa uses by default)."""
    if orig_sr == target_sr:
        return wav
    import soxr

    return soxr.resample(wav, orig_sr, target_sr, quality="HQ").astype(np.float32)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float samples in [-1, 1] as 16-bit PCM WAV, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.asarray(samples, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: refusing to write audio with NaN/Inf samples")
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
