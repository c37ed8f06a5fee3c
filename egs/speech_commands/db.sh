# shellcheck shell=bash
# Where Speech Commands v0.01 lives on this machine: set SPEECH_COMMANDS once here (an absolute path), export it
# in the environment, or pass --corpus DIR to run.sh. No default: the corpus is not shipped.
#   SPEECH_COMMANDS: the folder speech_commands_v0.01.tar.gz was extracted into (it has validation_list.txt); the official test set (speech_commands_test_set_v0.01.tar.gz) goes into its sub-folder or sibling speech_commands_test_set_v0.01/
#   download: http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz
SPEECH_COMMANDS=${SPEECH_COMMANDS:-}
