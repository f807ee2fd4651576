#!/usr/bin/env bash
# The whole comparison: each algorithm in ALGOS for each seed in SEEDS, one run after another, all
# with the same config (configs/math_comparison.yaml) and preset. Extra arguments (Hydra overrides)
# go to every run; paths and GPUs come from the environment, as for each script (common.sh).
#   SEEDS="1 2 3" bash recipe/xrpo/run_all.sh
#   ALGOS="grpo xrpo_grpo" bash recipe/xrpo/run_all.sh preset=qwen2_5_7b_instruct trainer.test_freq=10
#   DRY_RUN=1 bash recipe/xrpo/run_all.sh        # compose every config, launch nothing
# SEEDS passes data.seed=<N> to each run (unset: one run per algorithm, at the config's seed).
# KEEP_GOING=1 carries on after a failed run (a summary is printed at the end).
set -euo pipefail
RECIPE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

ALGOS=${ALGOS:-grpo gspo xrpo_grpo xrpo_gspo}
SEEDS=${SEEDS:-}
KEEP_GOING=${KEEP_GOING:-0}

for arg in "$@"; do
    case "${arg}" in
        trainer.experiment_name=* | trainer.default_local_dir=*)
            echo "error: ${arg%%=*} would be the same for every run; each gets <algo>-seed<N> by itself" >&2
            exit 1
            ;;
        data.seed=*)
            if [[ -n "${SEEDS}" ]]; then
                echo "error: both SEEDS='${SEEDS}' and ${arg} given; use SEEDS only" >&2
                exit 1
            fi
            ;;
    esac
done
for algo in ${ALGOS}; do
    if [[ ! -f "${RECIPE_DIR}/run_${algo}.sh" ]]; then
        echo "error: unknown algorithm '${algo}' in ALGOS (expected grpo, gspo, xrpo_grpo, xrpo_gspo)" >&2
        exit 1
    fi
done

failed=()
# "-": no data.seed override, the config's seed
for seed in ${SEEDS:--}; do
    seed_args=()
    if [[ "${seed}" != - ]]; then
        seed_args=(data.seed="${seed}")
    fi
    for algo in ${ALGOS}; do
        echo "[run_all] ===== ${algo}, seed ${seed} =====" >&2
        if bash "${RECIPE_DIR}/run_${algo}.sh" "${seed_args[@]}" "$@"; then
            :
        else
            status=$?
            failed+=("${algo}/seed ${seed} (exit ${status})")
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
