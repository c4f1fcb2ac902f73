#!/usr/bin/env bash
# Rebuilds every report and figure under docs/results/ from the model
# folders in docs/results/models/ (docs/results.md shows them):
#
#     bash docs/results/rebuild.sh PATH/TO/glue_data
#
# The GLUE folder gives the dev and training labels the predictions are
# scored against. Run from anywhere; the outputs are the same bytes each
# time.
set -euo pipefail
glue_dir=$(cd "${1:?usage: bash docs/results/rebuild.sh GLUE_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$(dirname "$here")")
singles=minilm-rte-single+minilm-mrpc-single+minilm-sts-single+minilm-cola-single
table1="Single=$singles,Multi=minilm-multi,Single->Multi=minilm-single-to-multi"
ablations="Single->Multi=minilm-single-to-multi,lambda-0=minilm-single-to-multi-lambda0,Multi=minilm-multi,exponent-1=minilm-exp1-multi"
stsw10="$table1,sts-weight-10=minilm-stsw10-multi"
doubling="doubled=minilm-sts-single,not-doubled=minilm-sts-single-nodouble"

report() {  # NAME MODELS [FLAGS...]
  local name=$1 models=$2
  shift 2
  python "$repo/scripts/report.py" --bam_dir="$here" --glue_dir="$glue_dir" \
    --model_names="$models" --output_json="$here/reports/$name.json" \
    --markdown="$here/reports/$name.md" "$@" > /dev/null
  echo "wrote $here/reports/$name.json and .md"
}

report table1 "$table1" --figure="$here/figures/table1.png" \
  --paper_scores="$here/paper_table1.json" \
  --figure_title="MiniLM-L6, GLUE dev (dots: trials; bars: medians; diamonds: the paper's BERT-Large, Table 1)"
report table1_train "$table1" --split=train
# Table 4's questions: each ablation against the model it ablates.
asked="Single->Multi:lambda-0,Multi:exponent-1"
report ablations "$ablations" --comparisons="$asked" \
  --figure="$here/figures/ablations.png" \
  --figure_title="Ablations, GLUE dev (dots: trials; bars: medians)"
report ablations_train "$ablations" --comparisons="$asked" --split=train
report sts_weight "$stsw10"
report sts_weight_train "$stsw10" --split=train
report sts_doubling "$doubling"
