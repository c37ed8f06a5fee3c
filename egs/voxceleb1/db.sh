# shellcheck shell=bash
# Where VoxCeleb1 lives on this machine: set VOXCELEB1 once here (an absolute path), export it
# in the environment, or pass --corpus DIR to run.sh. No default: the corpus is not shipped.
#   VOXCELEB1: the folder with wav/ (or vox1_dev_wav/wav and vox1_test_wav/wav), iden_split.txt and veri_test2.txt (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/)
#   download: https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html
VOXCELEB1=${VOXCELEB1:-}
