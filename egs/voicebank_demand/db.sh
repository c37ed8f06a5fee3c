# shellcheck shell=bash
# Where VoiceBank-DEMAND lives on this machine: set VOICEBANK_DEMAND once here (an absolute path), export it
# in the environment, or pass --corpus DIR to run.sh. No default: the corpus is not shipped.
#   VOICEBANK_DEMAND: the folder with clean_trainset_28spk_wav/, noisy_trainset_28spk_wav/, clean_testset_wav/ and noisy_testset_wav/ (48 kHz)
#   download: https://datashare.ed.ac.uk/handle/10283/2791
VOICEBANK_DEMAND=${VOICEBANK_DEMAND:-}
