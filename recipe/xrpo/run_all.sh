#!/usr/bin/env bash
# The whole comparison: each algorithm in ALGOS for each seed in SEEDS, one run after another, all with
# the same model preset, data and rollout budget (common.sh). Extra arguments go to every run.
#   MODEL=qwen3-1.7b SEEDS="1 2 3" bash recipe/xrpo/run_all.sh
#   ALGOS="grpo xrpo_grpo" MODEL=qwen2.5-7b-instruct bash recipe/xrpo/run_all.sh trainer.test_freq=10
#   DRY_RUN=1 bash recipe/xrpo/run_all.sh        # compose every config, launch nothing
# KEEP_GOING=1 carries on after a failed run (a summary is printed at the end).
set -euo pipefail
RECIPE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

ALGOS=${ALGOS:-grpo gspo xrpo_grpo xrpo_gspo}
SEEDS=${SEEDS:-${SEED:-1}}
KEEP_GOING=${KEEP_GOING:-0}

if [[ -n "${EXPERIMENT_NAME:-}" ]]; then
    echo "[run_all] ignoring EXPERIMENT_NAME=${EXPERIMENT_NAME}: every run gets its own <algo>-<model>-seed<N> name" >&2
    unset EXPERIMENT_NAME
fi
for algo in ${ALGOS}; do
    if [[ ! -f "${RECIPE_DIR}/run_${algo}.sh" ]]; then
        echo "error: unknown algorithm '${algo}' in ALGOS (expected grpo, gspo, xrpo_grpo, xrpo_gspo)" >&2
        exit 1
    fi
done

failed=()
for seed in ${SEEDS}; do
    for algo in ${ALGOS}; do
        echo "[run_all] ===== ${algo}, seed ${seed} =====" >&2
        if SEED="${seed}" bash "${RECIPE_DIR}/run_${algo}.sh" "$@"; then
            :
        else
            status=$?
            failed+=("${algo}/seed${seed} (exit ${status})")
            if [[ "${KEEP_GOING}" != 1 ]]; then
                echo "[run_all] ${algo} seed ${seed} failed with exit ${status}; stopping (KEEP_GOING=1 to go on)" >&2
                exit "${status}"
            fi
        fi
    done
done

if (( ${#failed[@]} > 0 )); then
    echo "[run_all] failed runs: ${failed[*]}" >&2
    exit 1
fi
echo "[run_all] all runs finished: ALGOS='${ALGOS}' SEEDS='${SEEDS}'" >&2
