#!/usr/bin/env bash
# Rebuild the testbed from the corpus: tokenizer -> target LM -> EAGLE-3 head -> evaluation ->
# ConFu ablation (base head, EAGLE-3 control, three ConFu variants, evaluation), then copy the
# result into models/testbed/ (the embedded default model of the `confu` binary).
#
#   bash scripts/testbed.sh [WORK_DIR]        (default WORK_DIR: target/testbed)
#
# Every stage resumes: a finished stage is skipped, a killed training run continues from its last
# checkpoint. The target and first head take about 2 hours on 2 CPU cores, the ConFu ablation
# (docs/confu.md) about 6 more; see docs/testbed.md for what each stage produces.
# Settings: testbed/lm.json, testbed/eagle3.json, testbed/ablation/*.json. CORPUS overrides
# ../shared/corpus; BASE_CHUNKS (default 4) sets how long the ablation's base head trains.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${1:-target/testbed}
CORPUS=${CORPUS:-$ROOT/../shared/corpus}
PROMPTS=$CORPUS/prompts-dev.jsonl
mkdir -p "$WORK"

cargo build --release -p cli
CONFU=$ROOT/target/release/confu

stage() { echo; echo "== $1 ($(date -u +%H:%M:%S))"; }
# A training stage that has not exported yet continues from its newest complete checkpoint, or
# starts afresh (--force: the folder then holds only this stage's own unfinished work).
continue_or_restart() {
  if [ -d "$1/checkpoint" ] || [ -d "$1/checkpoint.old" ]; then echo --resume; else echo --force; fi
}

stage "tokenizer"
if [ ! -f "$WORK/tok/tokenizer.json" ]; then
  "$CONFU" train tokenizer --corpus "$CORPUS" --vocab-size 4096 --out "$WORK/tok" --force
fi

stage "target LM"
if [ ! -f "$WORK/target/model.safetensors" ]; then
  "$CONFU" train lm --corpus "$CORPUS" --tokenizer "$WORK/tok" --config testbed/lm.json \
    --out "$WORK/target" "$(continue_or_restart "$WORK/target")"
fi

stage "EAGLE-3 head"
if [ ! -f "$WORK/draft/model.safetensors" ]; then
  "$CONFU" train eagle3 --target "$WORK/target" --corpus "$CORPUS" --config testbed/eagle3.json \
    --out "$WORK/draft" "$(continue_or_restart "$WORK/draft")"
fi

stage "evaluation on $PROMPTS"
for temp in 0 1; do
  for tree in 30,5,8 60,5,10 4,3,1; do
    name="eval-t$temp-${tree//,/-}"
    [ -f "$WORK/$name.json" ] && continue
    "$CONFU" eval --model "$WORK/target" --draft "$WORK/draft" --prompts "$PROMPTS" \
      --temperature "$temp" --tree "$tree" --max-new-tokens 128 \
      --json "$WORK/$name.json" --plot "$WORK/$name.png" | tee "$WORK/$name.txt"
  done
done

stage "ablation: the EAGLE-3 base, continued until its dev loss flattens"
# BASE_CHUNKS chunks of testbed/ablation/base.json, each continuing the previous head with a new
# seed (new batches); docs/confu.md shows the dev loss per chunk.
A=$WORK/ablation
mkdir -p "$A"
prev=$WORK/draft
for k in $(seq 1 "${BASE_CHUNKS:-4}"); do
  out=$A/base-$k
  if [ ! -f "$out/model.safetensors" ]; then
    "$CONFU" train eagle3 --target "$WORK/target" --corpus "$CORPUS" --init "$prev" --seed "$k" \
      --config testbed/ablation/base.json --out "$out" "$(continue_or_restart "$out")"
  fi
  prev=$out
done
BASE=$prev

stage "ablation: the same extra steps and data from the base"
if [ ! -f "$A/control/model.safetensors" ]; then
  "$CONFU" train eagle3 --target "$WORK/target" --corpus "$CORPUS" --init "$BASE" \
    --config testbed/ablation/control.json --out "$A/control" "$(continue_or_restart "$A/control")"
fi
VARIANTS="confu-static confu-static-rep confu-full"
for v in $VARIANTS; do
  if [ ! -f "$A/$v/confu.safetensors" ]; then
    "$CONFU" train confu --target "$WORK/target" --corpus "$CORPUS" --init "$BASE" \
      --config "testbed/ablation/$v.json" --out "$A/$v" "$(continue_or_restart "$A/$v")"
  fi
done

stage "ablation: one confu eval per setting, every variant against the control"
drafts=(--draft "$A/control")
for v in $VARIANTS; do drafts+=(--draft "$A/$v"); done
for temp in 0 0.7 1; do
  for tree in 30,5,8 60,5,10 4,3,1; do
    name="ablation-t$temp-${tree//,/-}"
    [ -f "$A/$name.json" ] && continue
    "$CONFU" eval --model "$WORK/target" "${drafts[@]}" --prompts "$PROMPTS" \
      --temperature "$temp" --tree "$tree" --max-new-tokens 128 \
      --json "$A/$name.json" --plot "$A/$name.png" | tee "$A/$name.txt"
  done
done
python3 scripts/ablation_table.py "$A" | tee "$A/table.md"

stage "embedding into models/testbed"
mkdir -p models/testbed/target models/testbed/draft models/testbed/confu
# Each folder keeps its training log: a head's dev evaluation seeds `--tree auto`'s acceptance prior.
cp "$WORK"/target/{config.json,model.safetensors,tokenizer.json,log.json} models/testbed/target/
cp "$A"/control/{config.json,model.safetensors,log.json} models/testbed/draft/
cp "$A"/confu-full/{config.json,model.safetensors,confu.json,confu.safetensors,log.json} models/testbed/confu/
cp "$PROMPTS" models/testbed/prompts-dev.jsonl
du -sh models/testbed
echo "done; rebuild the CLI (cargo build --release -p cli) to embed the new model"
