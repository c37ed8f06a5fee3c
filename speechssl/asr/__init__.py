"""ASR: tokenizers, the CTC model over any upstream, KenLM language models, decoding (greedy,
prefix beam search with LM fusion, n-best, rescoring, timestamps), scoring and transcription.

Modules are imported where used (``speechssl.asr.model``, ``.decode``, ``.lm``, ...), so importing
the package costs nothing.
"""
