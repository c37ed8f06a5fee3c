"""Data: Kaldi data directories, audio I/O, corpora and the embedded synthetic corpus."""
