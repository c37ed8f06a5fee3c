"""speechssl: speech self-supervised learning toolkit with Kaldi/ESPnet-style recipes."""

__version__ = "0.1.0"
