#!/bin/sh
# Test accuracy of kiln train vs bench/torch_train.py, same recipe (Adam 1e-3,
# batch 64, 5 epochs, max-len 256, valid-split 0.1), over seeds.
# usage: repro.sh CORPUS_DIR WORK_DIR MODEL "SEEDS"   (MODEL: sdpa | attnpool)
# env: KILN (default /tmp/kiln-sdpa/kiln), BACKEND (default onednn)
set -e
corpus=$1 work=$2 model=$3 seeds=$4
kiln=${KILN:-/tmp/kiln-sdpa/kiln} backend=${BACKEND:-onednn}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$work"
export OMP_NUM_THREADS=1
for s in $seeds; do
  ck=$work/k_${model}_$s.safetensors
  nice -n 10 "$kiln" train "$root/examples/classifier_$model.kiln" --data "$corpus/train.tsv" --out "$ck" \
    --seed "$s" --backend "$backend" --threads 1 --force >"$work/k_${model}_$s.log" 2>&1
  ka=$(nice -n 10 "$kiln" eval --ckpt "$ck" --data "$corpus/test.tsv" --backend "$backend" --threads 1 2>&1 |
       awk '$1=="accuracy"{print $2}')
  ta=$(nice -n 10 /usr/bin/python3 "$root/bench/torch_train.py" "$model" --train "$corpus/train.tsv" \
       --test "$corpus/test.tsv" --seed "$s" --threads 1 2>&1 | tee "$work/t_${model}_$s.log" |
       sed -n 's/.*test accuracy \([0-9.]*\).*/\1/p')
  echo "$model seed $s: kiln $ka torch $ta"
done
