#!/usr/bin/env bash
# The GPU smoke test: what to run first on a new GPU machine, after `bash scripts/install.sh`, and
# what this project runs whenever it has a GPU at hand. On one GPU, in this order:
#   1. the installed stack: verl 0.9.1's GPU pins, torch seeing the GPU, CPU mode off, flash-attn;
#   2. the scale model through stock main_ppo with XRPO (python -m recipe.xrpo.scale_model.train):
#      2 steps with a checkpoint after each; exit code, both steps with XRPO's metrics in
#      metrics.jsonl, and checkpoints/global_step_2/xrpo/;
#   3. with MODEL_PATH, one step of each comparison preset (recipe/xrpo/run_*.sh) on that model:
#      exit code, the step in the metrics, XRPO's metrics in the XRPO runs and in no other.
# Every check prints one line; the first failure stops it (exit 1) naming the log to read. The logs
# stay in a fresh folder under ${TMPDIR:-/tmp}, printed at the end.
#
#   bash scripts/gpu_smoke.sh
#   MODEL_PATH=/models/Qwen3-1.7B bash scripts/gpu_smoke.sh
#   MODEL_PATH=/models/Qwen2.5-7B-Instruct DATA_DIR=~/data/xrpo_math \
#       bash scripts/gpu_smoke.sh preset=qwen2_5_7b_instruct
#
# The presets run one step at one-GPU sizes (the overrides below) without validation or checkpoints.
# Arguments are Hydra overrides for the preset runs, applied after those sizes (so they win) and
# before what the checks rely on. They train on the scale model's arithmetic prompts with its
# reward, unless DATA_DIR, TRAIN_FILES or VAL_FILES is set: then common.sh reads the data as for a
# real run. NGPUS (default 1 here) and CUDA_VISIBLE_DEVICES pick the GPUs. PYTHON is the interpreter
# (common.sh's default, python3). tests/test_gpu_smoke.py runs this script on a CPU machine with
# stand-ins for nvidia-smi and $PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

ok() { echo "ok    $*"; }
fail() {
    echo "FAIL  $*" >&2
    exit 1
}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! gpus=$(nvidia-smi -L 2>/dev/null) || [[ -z "$gpus" ]]; then
    fail "no NVIDIA GPU found (nvidia-smi is missing or fails): run this on a machine with a GPU and driver"
fi
if [[ -n "${MODEL_PATH:-}" && ! -f "${MODEL_PATH}/config.json" ]]; then
    fail "MODEL_PATH=${MODEL_PATH} is not a model folder (no config.json): point it at a Hugging Face model"
fi
ok "$(head -n 1 <<<"$gpus") ($(wc -l <<<"$gpus") visible)"

export PYTHON=${PYTHON:-python3}
work=$(mktemp -d -t xrpo-gpu-smoke.XXXXXX)

# 1. the installed stack
"$PYTHON" -m recipe.xrpo.smoke_check env

# 2. the scale model: 2 steps, a checkpoint after each; trainer.n_gpus_per_node: verl's default is 8
run_dir="$work/scale_model"
log="$work/scale_model.log"
status=0
started=$SECONDS
"$PYTHON" -m recipe.xrpo.scale_model.train --run-dir "$run_dir" --steps 2 --save-freq 1 \
    -- trainer.n_gpus_per_node=1 >"$log" 2>&1 || status=$?
((status == 0)) ||
    fail "scale model: the main job exited with $status; log: $log (verl's own: $run_dir/train.log)"
ok "scale model: main_ppo with XRPO exited 0 after $((SECONDS - started)) s"
"$PYTHON" -m recipe.xrpo.smoke_check run --name "scale model" --metrics "$run_dir/metrics.jsonl" --steps 2 \
    --xrpo --checkpoint "$run_dir/checkpoints/global_step_2" --log "$run_dir/train.log"

# 3. one step of each preset
if [[ -z "${MODEL_PATH:-}" ]]; then
    echo "skip  presets: they need a model folder and none was given" \
        "(MODEL_PATH=/path/to/Qwen3-1.7B bash scripts/gpu_smoke.sh runs one step of each)"
else
    : "${NGPUS:=1}"
    export MODEL_PATH NGPUS
    # one-GPU sizes: small batch and responses, rollout on the one GPU, weights offloaded between uses
    sizes=(actor_rollout_ref.rollout.tensor_model_parallel_size=1 data.train_batch_size=8
        actor_rollout_ref.actor.ppo_mini_batch_size=8 data.max_response_length=1024
        actor_rollout_ref.rollout.gpu_memory_utilization=0.5
        actor_rollout_ref.actor.fsdp_config.param_offload=True
        actor_rollout_ref.actor.fsdp_config.optimizer_offload=True
        actor_rollout_ref.ref.fsdp_config.param_offload=True)
    # what the checks rely on, whatever the arguments say: one step, no validation, nothing
    # resumed from or saved to a real run's checkpoints, metrics in a file
    export DRY_RUN=0 CKPT_ROOT="$work/checkpoints"
    fixed=(trainer.total_training_steps=1 trainer.val_before_train=False trainer.test_freq=-1
        trainer.save_freq=-1 trainer.project_name=xrpo-gpu-smoke 'trainer.logger=["console","file"]')
    if [[ -z "${DATA_DIR:-}${TRAIN_FILES:-}${VAL_FILES:-}" ]]; then
        export TRAIN_FILES="$run_dir/data/train.parquet" VAL_FILES="$run_dir/data/val.parquet"
        fixed+=(reward.custom_reward_function.path="$repo/recipe/xrpo/scale_model/reward.py"
            reward.custom_reward_function.name=compute_score)
        data="the scale model's prompts"
    else
        data="common.sh's data"
    fi
    for algo in grpo gspo xrpo_grpo xrpo_gspo; do
        log="$work/preset_${algo}.log"
        metrics="$work/preset_${algo}.jsonl"
        if [[ "$algo" == xrpo_* ]]; then xrpo=--xrpo; else xrpo=--no-xrpo; fi
        status=0
        started=$SECONDS
        # from the work folder, where Hydra writes its outputs/
        (cd "$work" && VERL_FILE_LOGGER_PATH="$metrics" \
            bash "$repo/recipe/xrpo/run_${algo}.sh" "${sizes[@]}" "$@" "${fixed[@]}") >"$log" 2>&1 || status=$?
        ((status == 0)) || fail "preset $algo: run_${algo}.sh exited with $status; log: $log"
        ok "preset $algo: one step of $(basename "$MODEL_PATH") on $data" \
            "exited 0 after $((SECONDS - started)) s"
        "$PYTHON" -m recipe.xrpo.smoke_check run --name "preset $algo" --metrics "$metrics" --steps 1 \
            "$xrpo" --log "$log"
    done
fi

echo "passed: every check above; logs in $work"
