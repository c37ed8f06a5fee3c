"""SUPERB speech enhancement (SE): a BLSTM over the upstream features predicts a mask on the
noisy STFT magnitude (s3prl ``enhancement_stft``, model ``SepRNN``, VoiceBank-DEMAND config).

- STFT: n_fft 512, hann window of 512, ``center=True``, **hop = upstream stride**, so the STFT
  and the features advance at the same rate and frame ``t`` is paired with frame ``t``, as in
  s3prl. (STFT frame ``t`` is centred on sample ``t * hop``; an fbank or wav2vec 2.0 frame
  ``t`` on ``t * hop + 200``, half its 400-sample window; the BLSTM sees both neighbours.) An
  upstream emits 1-3 frames fewer than the STFT: the features are padded by repeating their
  last frame, and a gap of more than :data:`MAX_FRAME_MISMATCH` frames is an error (s3prl's
  ``match_length`` asserts < 5).
- Head: 3-layer BLSTM (896 units per direction, dropout 0.5) -> Linear -> **ReLU** mask (the
  protocol's ``non_linear: relu``; unbounded above, so it can also amplify).
- Loss: MSE against the non-negative phase-sensitive target (``mask_type: NPSM``), written in
  the spectrum domain: ``|| M |Y| - max(0, |S| cos(θS - θY)) ||²``. This is the mask error
  ``(M - NPSM)²`` with ``NPSM = |S|/|Y| cos(θS - θY)`` weighted by ``|Y|²``, which keeps
  near-silent bins (where |S|/|Y| is ill-conditioned) from dominating. Summed over bins, one unit
  per valid STFT frame.
- Output: iSTFT of ``M · Y`` (the noisy phase), trimmed to the input length.
- Metrics: PESQ (wide-band), STOI, SI-SDR and SI-SDR improvement over the noisy input. Model
  selection uses dev **PESQ** by default, as s3prl does (``best-states-dev`` by PESQ) and as
  SUPERB reports it. PESQ costs ~50 ms per second of audio on one core (about a minute per
  pass over VoiceBank's test set; the noisy input's scores are computed once and kept), small
  next to the probe's 150k training steps.
  ``SpeechEnhancement(metric="si_sdri")`` selects on SI-SDR improvement instead.

Data: a data dir whose ``wav.scp`` is the noisy audio (the runner supplies it in the batch) and
whose ``clean.scp`` maps the same utterances to the clean reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from speechssl.data.audio import load_audio
from speechssl.data.kaldi import DataDir, DataDirError
from speechssl.enhance.metrics import MetricError, pesq_wb, si_sdr, stoi
from speechssl.nn.conv_encoder import length_mask
from speechssl.nn.rnn import BiLSTM
from speechssl.superb.tasks.base import ProbeBatch, Task

N_FFT = 512
MAX_FRAME_MISMATCH = 4  # feature vs STFT frames, per utterance (s3prl asserts < 5)
SAMPLE_RATE = 16000


class SepRNN(nn.Module):
    """Mask estimator: features aligned to the STFT frames -> BLSTM -> Linear -> ReLU.

    Owns the STFT settings (hop = the upstream stride it was built for), so the same head
    always analyses and resynthesises at the rate its features come at.
    """

    def __init__(
        self,
        input_dim: int,
        stride: int,
        hidden_size: int = 896,
        num_layers: int = 3,
        dropout: float = 0.5,
        n_fft: int = N_FFT,
    ):
        super().__init__()
        if not 0 < stride <= n_fft:
            raise ValueError(
                f"SE head: upstream stride {stride} must be between 1 and n_fft={n_fft} "
                "(the STFT hop is the stride; a larger hop leaves gaps the iSTFT cannot fill)"
            )
        self.hop = stride
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.rnn = BiLSTM(
            input_dim,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.mask = nn.Linear(2 * hidden_size, n_fft // 2 + 1)

    def num_frames(self, wav_lengths: torch.Tensor) -> torch.Tensor:
        """STFT frames of each utterance: ``1 + S // hop`` (``center=True``)."""
        return 1 + torch.div(wav_lengths, self.hop, rounding_mode="floor")

    def stft(self, wavs: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` waveforms -> ``(B, F, K)`` complex spectra, ``K = n_fft/2 + 1``."""
        spec = torch.stft(
            wavs.float(),
            self.n_fft,
            hop_length=self.hop,
            window=self.window,
            center=True,
            return_complex=True,
        )
        return spec.transpose(1, 2)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """``(B, F, K)`` complex spectra -> ``(B, length)`` waveforms."""
        return torch.istft(
            spec.transpose(1, 2),
            self.n_fft,
            hop_length=self.hop,
            window=self.window,
            center=True,
            length=length,
        )

    def forward(self, features: torch.Tensor, num_frames: torch.Tensor) -> torch.Tensor:
        """Masks for the STFT frames.

        Args:
            features: ``(B, F, D)`` aligned to the STFT frames (:func:`align_features`).
            num_frames: ``(B,)`` valid STFT frames.
        Returns: ``(B, max(num_frames), K)`` non-negative masks (zero on padded frames).
        """
        hidden = self.rnn(features[:, : int(num_frames.max())], num_frames)
        return torch.relu(self.mask(self.dropout(hidden)))


def align_features(
    features: torch.Tensor,
    lengths: torch.Tensor,
    num_frames: torch.Tensor,
    utt_ids: list[str],
    max_mismatch: int = MAX_FRAME_MISMATCH,
) -> torch.Tensor:
    """Features resampled onto the STFT frame grid (same rate, since hop = stride): frame ``t``
    of utterance ``b`` is feature frame ``min(t, lengths[b] - 1)``, i.e. extra STFT frames
    repeat the last feature frame and surplus feature frames are dropped.

    Args: features ``(B, T, D)``, lengths ``(B,)``, num_frames ``(B,)`` STFT frames.
    Returns: ``(B, max(num_frames), D)``.
    """
    lengths, num_frames = lengths.to(features.device), num_frames.to(features.device)
    bad = ((num_frames - lengths).abs() > max_mismatch) | (lengths < 1)
    if bool(bad.any()):
        b = int(bad.nonzero()[0])
        raise ValueError(
            f"SE: utterance '{utt_ids[b]}' has {int(lengths[b])} feature frames but its audio "
            f"gives {int(num_frames[b])} STFT frames (more than {max_mismatch} apart); the "
            "upstream stride passed to the task does not "
            "match the features, or the audio is not the audio the features came from"
        )
    frames = torch.arange(int(num_frames.max()), device=features.device)
    index = torch.minimum(frames[None, :], (lengths - 1)[:, None])  # (B, F)
    return torch.gather(features, 1, index[..., None].expand(-1, -1, features.shape[-1]))


def npsm_target(clean_spec: torch.Tensor, noisy_spec: torch.Tensor) -> torch.Tensor:
    """Phase-sensitive target magnitude ``max(0, |S| cos(θS - θY))`` (Erdogan et al. 2015),
    i.e. the non-negative PSM times ``|Y|``. ``|S| cos(θS - θY) = Re(S Y*) / |Y|``."""
    projection = (clean_spec * noisy_spec.conj()).real / noisy_spec.abs().clamp(min=1e-8)
    return projection.clamp(min=0)


class SpeechEnhancement(Task):
    name = "se"
    higher_is_better = True
    needs_audio = True
    max_train_seconds = None  # whole utterances (a crop would also have to crop the reference)
    # s3prl cfg_voicebank.yaml: AdamW (weight decay 0 in s3prl's own AdamW), lr 1e-4, clip 1.0,
    # batch 8, 150k steps
    default_lr = 1e-4
    optimizer = "adamw"
    weight_decay = 0.0  # s3prl's AdamW for SE has no weight decay
    grad_clip = 1.0
    batch_size = 8
    default_steps = 150_000

    METRICS = ("pesq", "stoi", "si_sdri")

    def __init__(
        self,
        hidden_size: int = 896,
        num_layers: int = 3,
        dropout: float = 0.5,
        metric: str = "pesq",
    ):
        if metric not in self.METRICS:
            raise ValueError(f"SE: metric {metric!r} not one of {', '.join(self.METRICS)}")
        self.metric = metric
        self.hidden_size, self.num_layers, self.dropout = hidden_size, num_layers, dropout
        self._noisy_scores: dict[tuple[str, str], dict[str, float]] = {}

    def splits(self, data: Path) -> list[dict[str, Path]]:
        return [{split: Path(data) / "noisy" / split for split in ("train", "dev", "test")}]

    def targets(self, split_dir: Path) -> dict[str, str]:
        """utt -> path of its clean reference (from ``clean.scp``, resolved)."""
        split_dir = Path(split_dir)
        clean_scp = split_dir / "clean.scp"
        if not clean_scp.is_file():
            raise DataDirError(
                f"{clean_scp}: missing; the SE task needs '<utt> <clean wav>' for every noisy "
                "utterance of wav.scp (prepare the data dir with its clean references)"
            )
        data = DataDir.load(split_dir)
        clean = data.tables["clean.scp"]
        missing = [utt for utt in data.utt_ids if utt not in clean]
        if missing:
            raise DataDirError(
                f"{clean_scp}: no clean reference for {len(missing)} utterance(s) of wav.scp, "
                f"e.g. '{missing[0]}'; add them or drop them from the data dir"
            )
        return {utt: data.resolve(clean[utt]) for utt in data.utt_ids}

    def build_head(self, input_dim: int, stride: int, train_dir: Path) -> nn.Module:
        return SepRNN(input_dim, stride, self.hidden_size, self.num_layers, self.dropout)

    def loss(self, head: nn.Module, batch: ProbeBatch) -> tuple[torch.Tensor, int]:
        """Summed spectrum-domain NPSM error; units = valid STFT frames."""
        wavs, wav_lengths = _noisy_audio(batch, head)
        clean = _clean_audio(batch, wav_lengths).to(wavs.device)
        noisy_spec = head.stft(wavs)
        num_frames = head.num_frames(wav_lengths)
        features = align_features(batch.features, batch.lengths, num_frames, batch.utt_ids)
        mask = head(features, num_frames)
        target = npsm_target(head.stft(clean), noisy_spec)
        error = ((mask * noisy_spec.abs() - target) ** 2).sum(-1)  # (B, F)
        valid = length_mask(num_frames, error.shape[1])
        return error[valid].sum(), int(valid.sum())

    @torch.no_grad()
    def enhance(self, head: nn.Module, batch: ProbeBatch) -> list[torch.Tensor]:
        """The enhanced waveform of each utterance (1-D, its input length)."""
        wavs, wav_lengths = _noisy_audio(batch, head)
        noisy_spec = head.stft(wavs)
        num_frames = head.num_frames(wav_lengths)
        features = align_features(batch.features, batch.lengths, num_frames, batch.utt_ids)
        mask = head(features, num_frames)
        enhanced = head.istft(mask * noisy_spec, wavs.shape[1])
        return [enhanced[b, : int(n)].cpu() for b, n in enumerate(wav_lengths)]

    def evaluate(
        self, head: nn.Module, batches: Iterable[ProbeBatch], split_dir: Path
    ) -> dict[str, float]:
        """Mean PESQ, STOI, SI-SDR of the enhanced audio, the same of the noisy input
        (``*_noisy``) and ``si_sdri``, over the utterances of ``batches``."""
        totals: dict[str, float] = {}
        count = 0
        for batch in batches:
            for b, enhanced in enumerate(self.enhance(head, batch)):
                utt, clean_path = batch.utt_ids[b], batch.targets[b]
                clean = load_audio(clean_path, utt_id=utt)
                noisy = batch.wavs[b, : enhanced.shape[0]].cpu()
                scores = self._scores(utt, clean_path, clean, noisy, enhanced)
                for key, value in scores.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
        if count == 0:
            raise ValueError(f"SE: no utterances to evaluate in {split_dir}")
        return {key: value / count for key, value in totals.items()}

    def _scores(self, utt, clean_path, clean, noisy, enhanced) -> dict[str, float]:
        """Scores of one utterance; the noisy baseline is computed once per utterance."""
        try:
            key = (utt, clean_path)
            if key not in self._noisy_scores:
                self._noisy_scores[key] = _noisy_baseline(clean, noisy)
            scores = {
                "pesq": pesq_wb(clean, enhanced, SAMPLE_RATE),
                "stoi": stoi(clean, enhanced, SAMPLE_RATE),
                "si_sdr": si_sdr(clean, enhanced),
            }
        except MetricError as e:
            raise MetricError(f"SE: utterance '{utt}' ({clean_path}): {e}") from None
        scores |= self._noisy_scores[key]
        scores["si_sdri"] = scores["si_sdr"] - scores["si_sdr_noisy"]
        return scores

    def chance(self, train_dir: Path, test_dir: Path) -> float:
        """The main metric of the noisy test audio left as it is ("no enhancement"): 0 for
        SI-SDRi; for PESQ/STOI the noisy input's mean score, the baseline to beat."""
        if self.metric == "si_sdri":
            return 0.0
        data, clean_paths = DataDir.load(test_dir), self.targets(test_dir)
        values = []
        for utt in data.utt_ids:
            noisy = data.load_audio(utt)
            clean = load_audio(clean_paths[utt], utt_id=utt)
            values.append(_noisy_score(self.metric, clean, noisy))
        return float(sum(values) / len(values))


def _noisy_score(metric: str, clean, noisy) -> float:
    """PESQ or STOI of the noisy input alone: STOI costs 5x PESQ, and all six scores of every
    test utterance took ~40 s of a 2-minute CPU probe."""
    score = pesq_wb if metric == "pesq" else stoi
    return score(clean, noisy, SAMPLE_RATE)


def _noisy_baseline(clean, noisy) -> dict[str, float]:
    return {
        "pesq_noisy": pesq_wb(clean, noisy, SAMPLE_RATE),
        "stoi_noisy": stoi(clean, noisy, SAMPLE_RATE),
        "si_sdr_noisy": si_sdr(clean, noisy),
    }


def _noisy_audio(batch: ProbeBatch, head: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    if batch.wavs is None or batch.wav_lengths is None:
        raise ValueError("SE: the batch has no audio; the runner must set wavs for needs_audio")
    if batch.stride != head.hop:
        raise ValueError(
            f"SE: batch features have stride {batch.stride} but the head was built for "
            f"{head.hop}; build the head with the upstream's stride"
        )
    device = batch.features.device
    return batch.wavs.to(device), batch.wav_lengths.to(device)


def _clean_audio(batch: ProbeBatch, wav_lengths: torch.Tensor) -> torch.Tensor:
    """``(B, S)`` clean references from the batch's targets (paths), zero-padded like the
    noisy batch; each must have exactly its noisy utterance's length."""
    clean = torch.zeros(len(batch.utt_ids), int(batch.wavs.shape[1]))
    for b, (utt, path) in enumerate(zip(batch.utt_ids, batch.targets)):
        wav = torch.from_numpy(load_audio(path, utt_id=utt))
        if wav.shape[0] != int(wav_lengths[b]):
            raise ValueError(
                f"SE: utterance '{utt}': clean reference {path} has {wav.shape[0]} samples but "
                f"the noisy audio has {int(wav_lengths[b])}; noisy and clean must be "
                "sample-aligned (no cropping: max_train_seconds must stay None)"
            )
        clean[b, : wav.shape[0]] = wav
    return clean
