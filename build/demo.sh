#!/usr/bin/env bash
# The README's first command: build, make the seeded tiny model, predict and validate on the
# project's demo CSV. Ends with submission/submission.csv and a validation log loss.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
[ -f weights/tiny/manifest.json ] || node dist/trainer.cjs tiny --out weights/tiny
node dist/runner.cjs predict --data demo/arena-demo.csv --weights weights/tiny --out submission/submission.csv --ep cpu --tta swap
node dist/runner.cjs validate --data demo/arena-demo.csv --weights weights/tiny --ep cpu
echo "demo: submission written to $(pwd)/submission/submission.csv"
