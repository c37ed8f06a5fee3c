#!/usr/bin/env bash
# SSL pretraining stages, shared by every corpus: [k-means labels ->] pretrain -> export.
#
# HuBERT iterates: iteration 1 clusters 39-d MFCC, iteration i+1 clusters layer --hubert-layer of
# iteration i's exported upstream. Other methods run one iteration without labels.
# Each step is guarded by a .done marker; pretraining resumes from its last checkpoint.
#
#   recipes/ssl.sh --method wav2vec2 --config conf/ssl/wav2vec2_tiny.yaml \
#     --train data/asr/train_unlabeled --valid data/asr/dev --exp exp/ssl/wav2vec2_tiny
set -euo pipefail
SSL_RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SSL_RECIPE_DIR

stage=1              # 1 k-means labels (HuBERT), 2 pretrain, 3 export
stop_stage=3
method=wav2vec2      # any registered method (speechssl pretrain --help); hubert adds k-means stages
config=""            # pretraining YAML (method, preset, model, trainer, data)
train=""             # training data dir
valid=""             # validation data dir (optional)
exp=""               # experiment dir; iteration i of HuBERT goes to <exp>/iter<i>
nj=2                 # k-means label jobs
hubert_iters=2       # HuBERT iterations
hubert_clusters="100 500"  # clusters per iteration (the last value repeats)
hubert_layer=6       # 1-based layer whose output is clustered for iterations > 1
kmeans_percent=0.1   # fraction of utterances the k-means is fitted on
kmeans_opts=""       # extra `speechssl kmeans fit` options, e.g. "--n-init 1 --max-iter 20"
overrides=""         # extra `speechssl pretrain --set` values, space separated (k=v k=v)

help_message="Usage: $0 --config YAML --train DIR --exp DIR [options]"

. "$SSL_RECIPE_DIR/lib/common.sh"
. "$SSL_RECIPE_DIR/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1'"
[ -n "$config" ] && [ -n "$train" ] && [ -n "$exp" ] || die "--config, --train and --exp are needed"
require_file "$config" "$train/wav.scp"

set_args=()
for kv in $overrides; do set_args+=(--set "$kv"); done
valid_args=()
[ -z "$valid" ] || valid_args=(--valid "$valid")

iters=1
[ "$method" != hubert ] || iters=$hubert_iters
read -r -a clusters <<< "$hubert_clusters"

for ((it = 1; it <= iters; it++)); do
  dir=$exp
  [ "$method" != hubert ] || dir=$exp/iter$it
  mkdir -p "$dir"
  label_args=()

  if [ "$method" = hubert ]; then
    k=${clusters[$((it - 1))]:-${clusters[-1]}}
    km=$dir/kmeans
    labels=$dir/labels
    if stage_on 1; then
      if is_done "$labels/.done"; then
        log "iteration $it: k-means labels done already"
      else
        if [ "$it" -eq 1 ]; then
          feature=(--feature mfcc)
        else
          feature=(--feature upstream --upstream "$exp/iter$((it - 1))/upstream.pt" --layer "$hubert_layer")
        fi
        log "iteration $it: k-means ($k clusters, ${feature[*]})"
        # shellcheck disable=SC2086  # kmeans_opts is a list of options
        run_logged "$dir/kmeans.log" speechssl kmeans fit "${feature[@]}" --n-clusters "$k" \
          --percent "$kmeans_percent" $kmeans_opts "$train" "$km" || { tail -n 20 "$dir/kmeans.log" >&2; die "k-means failed"; }
        for set_dir in "$train" ${valid:+"$valid"}; do
          name=$(basename "$set_dir")
          run_jobs JOB=1:"$nj" "$labels/log/dump_$name.JOB.log" \
            speechssl kmeans dump --name "$name" --job JOB --nj "$nj" "$set_dir" "$km" "$labels"
          speechssl kmeans merge --name "$name" --nj "$nj" "$km" "$labels"
        done
        mark_done "$labels/.done" "clusters=$k"
      fi
    fi
    label_args=(--labels "$labels/$(basename "$train").km")
    [ -z "$valid" ] || label_args+=(--valid-labels "$labels/$(basename "$valid").km")
  fi

  if stage_on 2; then
    if is_done "$dir/.pretrain.done"; then
      log "iteration $it: pretraining done already ($dir)"
    else
      log "iteration $it: pretraining $method ($config) -> $dir"
      speechssl pretrain --config "$config" --method "$method" --data "$train" "${valid_args[@]}" \
        "${label_args[@]}" --exp "$dir" "${set_args[@]}"
      mark_done "$dir/.pretrain.done"
    fi
  fi

  if stage_on 3; then
    if is_done "$dir/.export.done"; then
      log "iteration $it: upstream exported already"
    else
      speechssl export "$dir/checkpoints/last.pt" "$dir/upstream.pt"
      mark_done "$dir/.export.done"
      log "iteration $it: upstream -> $dir/upstream.pt"
    fi
  fi
done
if [ "$method" = hubert ]; then
  ln -sfn "iter$iters/upstream.pt" "$exp/upstream.pt"
fi
