# shellcheck shell=bash
# Where Fluent Speech Commands lives on this machine: set FLUENT_SPEECH_COMMANDS once here (an absolute path), export it
# in the environment, or pass --corpus DIR to run.sh. No default: the corpus is not shipped.
#   FLUENT_SPEECH_COMMANDS: fluent_speech_commands_dataset/ (with data/*_data.csv and wavs/) or the folder holding it
#   download: https://fluent.ai/fluent-speech-commands-a-dataset-for-spoken-language-understanding-research/
FLUENT_SPEECH_COMMANDS=${FLUENT_SPEECH_COMMANDS:-}
