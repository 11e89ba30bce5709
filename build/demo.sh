#!/usr/bin/env bash
# The README's first command, the whole loop on the project's own demo data:
#   1. a seeded tiny Gemma-2 classifier as a Hugging Face folder (real Gemma-2 tokenizer, random weights)
#   2. LoRA fine-tuning of it on demo/arena-demo-train.csv (validation log loss per epoch on the held-out
#      demo/arena-demo.csv, whose questions the training file never asks)
#   3. import: the adapter merged and quantized to int4, as the runner loads it
#   4. the feature model fitted on the same training file
#   5. predict: the two blended, swap TTA -> submission/submission.csv
#   6. validate: each model alone and the blend on the held-out file (log loss; uniform is 1.0986)
# Everything is seeded; about a minute on two CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${DEMO_SKIP_BUILD:-}" ] || npm run --silent build
TRAIN=demo/arena-demo-train.csv
HELD_OUT=demo/arena-demo.csv
# the test suite points these elsewhere
W=${DEMO_WEIGHTS:-weights/demo}
SUBMISSION=${DEMO_SUBMISSION:-submission/submission.csv}
[ -f $W/tiny-hf/config.json ] || node dist/trainer.cjs tiny --hf --out $W/tiny-hf
node dist/trainer.cjs train --base $W/tiny-hf --data $TRAIN --valid $HELD_OUT --out $W/lora \
  --epochs 5 --lr 1e-3 --batch-size 8 --lora-r 8 --lora-alpha 16 --swap-augment
node dist/trainer.cjs import --base $W/tiny-hf --adapter $W/lora --quant int4 --max-tokens 512 --out $W/tiny-trained
node dist/trainer.cjs features --data $TRAIN --out $W/features
node dist/runner.cjs predict --data $HELD_OUT --weights $W/tiny-trained --weights $W/features --blend-weights 0.5,0.5 \
  --out "$SUBMISSION" --ep cpu --tta swap
figure() { node dist/runner.cjs validate --data $HELD_OUT "$@" --ep cpu 2>/dev/null | tail -n 1 | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(j.log_loss.toFixed(4)+" (accuracy "+j.accuracy.toFixed(3)+")")})'; }
echo "demo: held-out validation log loss on $HELD_OUT (uniform 1.0986):"
echo "  trained tiny model  $(figure --weights $W/tiny-trained)"
echo "  feature model       $(figure --weights $W/features)"
echo "  blend 0.5 / 0.5     $(figure --weights $W/tiny-trained --weights $W/features --blend-weights 0.5,0.5)"
echo "demo: submission written to $SUBMISSION"
