"""Building blocks shared by the SSL, ASR and SUPERB models."""

from speechssl.nn.conv_encoder import (
    WAV2VEC2_CONV_LAYERS,
    ConvFeatureEncoder,
    FeatureProjection,
    conv_output_lengths,
    layer_norm_waveform,
    length_mask,
)
from speechssl.nn.quantizer import GumbelVectorQuantizer, QuantizerOutput
from speechssl.nn.transformer import (
    ConvPositionalEmbedding,
    TransformerEncoder,
    TransformerLayer,
    TransformerOutput,
)

__all__ = [
    "WAV2VEC2_CONV_LAYERS",
    "ConvFeatureEncoder",
    "ConvPositionalEmbedding",
    "FeatureProjection",
    "GumbelVectorQuantizer",
    "QuantizerOutput",
    "TransformerEncoder",
    "TransformerLayer",
    "TransformerOutput",
    "conv_output_lengths",
    "layer_norm_waveform",
    "length_mask",
]
