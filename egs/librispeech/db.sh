# shellcheck shell=bash
# Where LibriSpeech lives on this machine: set LIBRISPEECH once here (an absolute path), export it
# in the environment, or pass --corpus DIR to run.sh. No default: the corpus is not shipped.
#   LIBRISPEECH: the folder holding LibriSpeech/ (train-clean-100, dev-clean, test-clean; for PR also librispeech-lexicon.txt from https://www.openslr.org/11)
#   download: https://www.openslr.org/12
LIBRISPEECH=${LIBRISPEECH:-}
