# shellcheck shell=bash
# Where IEMOCAP lives on this machine: set IEMOCAP once here (an absolute path), export it
# in the environment, or pass --corpus DIR to run.sh. No default: the corpus is not shipped.
#   IEMOCAP: IEMOCAP_full_release/ (Session1..Session5) or the folder holding it; released on request
#   download: https://sail.usc.edu/iemocap/
IEMOCAP=${IEMOCAP:-}
