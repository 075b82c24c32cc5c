#!/usr/bin/env bash
# Rebuild the testbed from the corpus: tokenizer -> target LM -> EAGLE-3 head -> evaluation, then
# copy the result into models/testbed/ (the embedded default model of the `confu` binary).
#
#   bash scripts/testbed.sh [WORK_DIR]        (default WORK_DIR: target/testbed)
#
# Every stage resumes: a finished stage is skipped, a killed training run continues from its last
# checkpoint. About 1.5-2 hours on 2 CPU cores; see docs/testbed.md for what each stage produces.
# Settings: testbed/lm.json, testbed/eagle3.json. CORPUS overrides ../shared/corpus.
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

stage "embedding into models/testbed"
mkdir -p models/testbed/target models/testbed/draft
cp "$WORK"/target/{config.json,model.safetensors,tokenizer.json} models/testbed/target/
cp "$WORK"/draft/{config.json,model.safetensors} models/testbed/draft/
cp "$WORK"/target/log.json models/testbed/target-log.json
cp "$WORK"/draft/log.json models/testbed/draft-log.json
du -sh models/testbed
echo "done; rebuild the CLI (cargo build --release -p cli) to embed the new model"
