#!/usr/bin/env bash
# The prepared GPU check (issue 22 item 9; BENCHMARKS.md "GPU check"). Three modes:
#   bench/gpu-check.sh pack [--out gpu-upload] [--node PATH]
#       here: build, then write the upload folder: node.tar.xz (the Node.js binary), kit.tar.xz
#       (dist/gpu-check.cjs + the ORT core dist/ort) and this script; refuses an upload over 60 MiB.
#   bench/gpu-check.sh run [--upload gpu-upload] [--report DIR] [-- gpu-check options]
#       on the GPU machine: unpack into a temp folder and run the check (10-minute limit), writing
#       DIR/gpu-check.json (default: $OUT, else the current folder). No network, no npm.
#   bench/gpu-check.sh local [-- gpu-check options]
#       both here into a temp folder (tests: `-- --width tiny`), as the GPU machine would run it.
# gpu-check options (bench/gpu-check.ts): --width 2b|tiny --layers N --vocab N --batch B --seq S --reps R
#   --eps cpu,cuda,webgpu --quant int4|int8 --seed N
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
LIMIT_MIB=60
XZ="xz -${GPU_CHECK_XZ:-0} -T2"   # level 0: node 29 MiB in seconds; -6 saves ~6 MiB for minutes
work=""
mode="${1:-}"; shift || true

pack() {
  local out="$repo/gpu-upload" node
  node="$(command -v node)"
  while [ $# -gt 0 ]; do
    case "$1" in
      --out) out="$2"; shift 2 ;;
      --node) node="$2"; shift 2 ;;
      *) echo "gpu-check pack: unknown option $1" >&2; exit 2 ;;
    esac
  done
  (cd "$repo" && npm run build >/dev/null)
  [ -f "$repo/dist/gpu-check.cjs" ] || { echo "gpu-check pack: dist/gpu-check.cjs missing after npm run build" >&2; exit 1; }
  rm -rf "$out"; mkdir -p "$out"
  local stage; stage="$(mktemp -d)"
  mkdir -p "$stage/kit/ort" "$stage/node"
  cp "$repo/dist/gpu-check.cjs" "$stage/kit/"
  cp "$repo/dist/ort/onnxruntime_binding.node" "$repo/dist/ort/libonnxruntime.so.1" "$stage/kit/ort/"
  cp "$node" "$stage/node/node"
  tar -C "$stage" -cf - kit | $XZ > "$out/kit.tar.xz"
  tar -C "$stage" -cf - node | $XZ > "$out/node.tar.xz"
  cp "$here/gpu-check.sh" "$out/"
  rm -rf "$stage"
  local bytes; bytes=$(du -cb "$out"/* | tail -1 | cut -f1)
  echo "gpu-check pack: $out $(du -b "$out"/* | awk '{printf "%s %.1f MiB; ", $2, $1/1048576}')total $(awk -v b="$bytes" 'BEGIN{printf "%.1f", b/1048576}') MiB (limit $LIMIT_MIB)"
  if [ "$bytes" -gt $((LIMIT_MIB * 1048576)) ]; then echo "gpu-check pack: upload is over $LIMIT_MIB MiB" >&2; exit 1; fi
}

run() {
  local upload="$here" report="${OUT:-$PWD}"
  [ -f "$upload/kit.tar.xz" ] || upload="$repo/gpu-upload"
  while [ $# -gt 0 ]; do
    case "$1" in
      --upload) upload="$2"; shift 2 ;;
      --report) report="$2"; shift 2 ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  [ -f "$upload/kit.tar.xz" ] || { echo "gpu-check run: no kit.tar.xz in $upload; run bench/gpu-check.sh pack first" >&2; exit 1; }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  xz -dc "$upload/kit.tar.xz" | tar -C "$work" -xf -
  xz -dc "$upload/node.tar.xz" | tar -C "$work" -xf -
  chmod +x "$work/node/node"
  mkdir -p "$report"
  echo "gpu-check run: node $("$work/node/node" --version), report $report/gpu-check.json"
  XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" timeout 570 "$work/node/node" "$work/kit/gpu-check.cjs" --out "$report/gpu-check.json" "$@"
}

case "$mode" in
  pack) pack "$@" ;;
  run) run "$@" ;;
  local)
    [ "${1:-}" = "--" ] && shift
    tmp="$(mktemp -d)"
    pack --out "$tmp/upload"
    run --upload "$tmp/upload" --report "$tmp/report" "$@"
    cat "$tmp/report/gpu-check.json"
    rm -rf "$tmp"
    ;;
  *) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
