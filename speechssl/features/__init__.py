"""Acoustic features: Kaldi-compatible fbank/MFCC (torchaudio), deltas, CMVN, ark/scp storage."""

from speechssl.features.extract import FeatureConfig, FeatureExtractor, compute_features

__all__ = ["FeatureConfig", "FeatureExtractor", "compute_features"]
