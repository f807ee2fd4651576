#!/usr/bin/env bash
# Settings shared by the four comparison runs (run_grpo.sh, run_gspo.sh, run_xrpo_grpo.sh,
# run_xrpo_gspo.sh). Sourced by them, not run on its own.
#
# Every setting below is an environment variable with a default, e.g.
#   MODEL=qwen2.5-7b-instruct MODEL_PATH=/models/Qwen2.5-7B-Instruct SEED=2 bash recipe/xrpo/run_grpo.sh
# Arguments given to a run script are appended as extra Hydra overrides; they come last, so they win.
# DRY_RUN=1 appends `--cfg job`: verl composes and prints the full config, then exits (no GPU, model or
# data needed), which checks every key before a long run.
#
# Equal budget: all four algorithms use the same data.train_batch_size (prompts per step) and
# actor_rollout_ref.rollout.n. GRPO/GSPO draw rollout.n rollouts for every prompt; XRPO spends the same
# total, train_batch_size * rollout.n rollouts per step, but shares it out unevenly over the prompts. Do
# not change TRAIN_BATCH_SIZE or ROLLOUT_N for one algorithm only.

set -euo pipefail

# ---- model presets ----------------------------------------------------------------------------------
# The two settings of the paper: Qwen3-1.7B (compared with GSPO) and Qwen2.5-7B-Instruct (compared with
# GRPO). Each preset only fills in defaults; any variable set in the environment wins.
MODEL=${MODEL:-qwen3-1.7b}
case "${MODEL}" in
    qwen3-1.7b)
        # One node of 8x 80 GB GPUs. A 1.7B model fits one GPU, so vLLM runs 8 replicas (TP=1) and
        # FSDP2 needs no offloading. Qwen3 thinks at length (thinking mode is on by default in its chat
        # template), hence an 8k response budget.
        : "${MODEL_PATH:=${HOME}/models/Qwen3-1.7B}"
        : "${MAX_PROMPT_LENGTH:=1024}"
        : "${MAX_RESPONSE_LENGTH:=8192}"
        # Prompt budget of XRPO's seeded prompts (question + 2 solved exemplars); see run_xrpo_*.sh.
        : "${XRPO_PROMPT_LENGTH:=4096}"
        # Tokens per GPU per micro-batch (dynamic batching); at least one full XRPO sequence (4096+8192).
        : "${PPO_MAX_TOKEN_LEN_PER_GPU:=24576}"
        : "${ROLLOUT_TP:=1}"
        : "${ROLLOUT_GPU_MEM_UTIL:=0.7}"
        : "${ACTOR_PARAM_OFFLOAD:=False}"
        : "${ACTOR_OPTIMIZER_OFFLOAD:=False}"
        : "${REF_PARAM_OFFLOAD:=False}"
        # Qwen3's recommended sampling for thinking mode, used for the validation samples.
        : "${VAL_TEMPERATURE:=0.6}"
        : "${VAL_TOP_P:=0.95}"
        : "${VAL_TOP_K:=20}"
        ;;
    qwen2.5-7b-instruct)
        # One node of 8x 80 GB GPUs. vLLM with TP=2 (4 replicas); the FSDP2 actor (fp32 master weights,
        # grads and Adam state, about 15 GB per GPU) is not offloaded; the reference model, needed only
        # for the KL loss, is kept on CPU between uses.
        : "${MODEL_PATH:=${HOME}/models/Qwen2.5-7B-Instruct}"
        : "${MAX_PROMPT_LENGTH:=1024}"
        : "${MAX_RESPONSE_LENGTH:=4096}"
        : "${XRPO_PROMPT_LENGTH:=3072}"
        : "${PPO_MAX_TOKEN_LEN_PER_GPU:=16384}"
        : "${ROLLOUT_TP:=2}"
        : "${ROLLOUT_GPU_MEM_UTIL:=0.6}"
        : "${ACTOR_PARAM_OFFLOAD:=False}"
        : "${ACTOR_OPTIMIZER_OFFLOAD:=False}"
        : "${REF_PARAM_OFFLOAD:=True}"
        # Qwen2.5-Instruct's generation_config sampling, used for the validation samples.
        : "${VAL_TEMPERATURE:=0.7}"
        : "${VAL_TOP_P:=0.8}"
        : "${VAL_TOP_K:=20}"
        ;;
    *)
        echo "error: unknown MODEL=${MODEL}; use qwen3-1.7b or qwen2.5-7b-instruct (and set MODEL_PATH)" >&2
        exit 1
        ;;
esac

# ---- data (made by prepare_math_data.py) -----------------------------------------------------------
DATA_DIR=${DATA_DIR:-${HOME}/data/xrpo_math}
TRAIN_FILES=${TRAIN_FILES:-${DATA_DIR}/train.parquet}
# All validation sets in one file; verl reports each data_source (aime24, aime25, ...) separately.
VAL_FILES=${VAL_FILES:-${DATA_DIR}/val_all.parquet}

# ---- hardware ---------------------------------------------------------------------------------------
NNODES=${NNODES:-1}
NGPUS=${NGPUS:-8}

# ---- the generation budget (identical for all four algorithms) --------------------------------------
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-128}
ROLLOUT_N=${ROLLOUT_N:-8}
# Prompts per actor update: TRAIN_BATCH_SIZE / PPO_MINI_BATCH_SIZE updates per step.
PPO_MINI_BATCH_SIZE=${PPO_MINI_BATCH_SIZE:-32}
TEMPERATURE=${TEMPERATURE:-1.0}

# ---- optimisation -----------------------------------------------------------------------------------
ACTOR_LR=${ACTOR_LR:-1e-6}
ENTROPY_COEFF=${ENTROPY_COEFF:-0}
SP_SIZE=${SP_SIZE:-1}
LOG_PROB_MAX_TOKEN_LEN_PER_GPU=${LOG_PROB_MAX_TOKEN_LEN_PER_GPU:-${PPO_MAX_TOKEN_LEN_PER_GPU}}

# ---- validation: VAL_N samples per problem give mean@N (pass@1) and maj@N (cons@N) ------------------
VAL_N=${VAL_N:-32}
VAL_BEFORE_TRAIN=${VAL_BEFORE_TRAIN:-True}
# Optional folder for every validation generation with its score (for offline pass@k / cons@k).
VAL_DUMP_DIR=${VAL_DUMP_DIR:-null}
LOG_VAL_GENERATIONS=${LOG_VAL_GENERATIONS:-10}

# ---- run length, checkpoints, logging ---------------------------------------------------------------
TOTAL_TRAINING_STEPS=${TOTAL_TRAINING_STEPS:-500}
TOTAL_EPOCHS=${TOTAL_EPOCHS:-100}
SAVE_FREQ=${SAVE_FREQ:-50}
TEST_FREQ=${TEST_FREQ:-20}
MAX_CKPT_TO_KEEP=${MAX_CKPT_TO_KEEP:-null}
PROJECT=${PROJECT:-xrpo-comparison}
SEED=${SEED:-1}
CKPT_ROOT=${CKPT_ROOT:-${HOME}/checkpoints}
LOGGER=${LOGGER:-'["console","wandb"]'}
PYTHON=${PYTHON:-python3}
DRY_RUN=${DRY_RUN:-0}

# ---- loss settings shared by the plain and the XRPO variant of each baseline -----------------------
# GRPO: token-level clipped objective with a low-variance KL loss against the reference model.
KL_LOSS_COEF=${KL_LOSS_COEF:-0.001}
GRPO_CLIP_LOW=${GRPO_CLIP_LOW:-0.2}
GRPO_CLIP_HIGH=${GRPO_CLIP_HIGH:-0.2}
# shellcheck disable=SC2034  # used by the run scripts
GRPO_LOSS_ARGS=(
    actor_rollout_ref.actor.policy_loss.loss_mode=vanilla
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.actor.clip_ratio_low="${GRPO_CLIP_LOW}"
    actor_rollout_ref.actor.clip_ratio_high="${GRPO_CLIP_HIGH}"
    actor_rollout_ref.actor.use_kl_loss=True
    actor_rollout_ref.actor.kl_loss_coef="${KL_LOSS_COEF}"
    actor_rollout_ref.actor.kl_loss_type=low_var_kl
)

# GSPO: sequence-level importance ratio, its small clip range, no KL (so no reference model). verl 0.9.1
# needs the aggregation mode set explicitly for GSPO.
GSPO_CLIP_LOW=${GSPO_CLIP_LOW:-0.0003}
GSPO_CLIP_HIGH=${GSPO_CLIP_HIGH:-0.0004}
# shellcheck disable=SC2034  # used by the run scripts
GSPO_LOSS_ARGS=(
    actor_rollout_ref.actor.policy_loss.loss_mode=gspo
    actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean
    actor_rollout_ref.actor.clip_ratio_low="${GSPO_CLIP_LOW}"
    actor_rollout_ref.actor.clip_ratio_high="${GSPO_CLIP_HIGH}"
    actor_rollout_ref.actor.use_kl_loss=False
)

# ---- XRPO (algorithm.xrpo.*, declared by the verl-xrpo plugin: no '+' needed) -----------------------
# Defaults are the plugin's (verl_xrpo/conf/xrpo/xrpo.yaml); the main knobs are spelled out here.
XRPO_N_BASE=${XRPO_N_BASE:-4}
XRPO_N_MAX=${XRPO_N_MAX:-null}
XRPO_NUM_PHASES=${XRPO_NUM_PHASES:-3}
XRPO_ALPHA=${XRPO_ALPHA:-0.05}
XRPO_UCB_LAMBDA=${XRPO_UCB_LAMBDA:-0.05}
XRPO_NUM_EXEMPLARS=${XRPO_NUM_EXEMPLARS:-2}
XRPO_RETRIEVER=${XRPO_RETRIEVER:-bm25}
XRPO_PRELOAD_PATH=${XRPO_PRELOAD_PATH:-null}
XRPO_NOVELTY_WEIGHT=${XRPO_NOVELTY_WEIGHT:-2.5}
XRPO_MAX_RATIO=${XRPO_MAX_RATIO:-0.5}
# shellcheck disable=SC2034  # used by the run scripts
XRPO_ARGS=(
    algorithm.adv_estimator=xrpo
    # Planning: n_base rollouts per prompt first, the rest of the budget in later phases.
    algorithm.xrpo.planning.enable=True
    algorithm.xrpo.planning.n_base="${XRPO_N_BASE}"
    algorithm.xrpo.planning.n_max="${XRPO_N_MAX}"
    algorithm.xrpo.planning.num_phases="${XRPO_NUM_PHASES}"
    algorithm.xrpo.planning.alpha="${XRPO_ALPHA}"
    algorithm.xrpo.planning.ucb_lambda="${XRPO_UCB_LAMBDA}"
    # Seeding: prompts whose rollouts all failed get solved exemplars of similar prompts.
    algorithm.xrpo.seeding.enable=True
    algorithm.xrpo.seeding.num_exemplars="${XRPO_NUM_EXEMPLARS}"
    algorithm.xrpo.seeding.retriever="${XRPO_RETRIEVER}"
    algorithm.xrpo.seeding.preload_path="${XRPO_PRELOAD_PATH}"
    # Sharpening: bounded bonus for correct answers the policy found unlikely.
    algorithm.xrpo.sharpening.enable=True
    algorithm.xrpo.sharpening.novelty_weight="${XRPO_NOVELTY_WEIGHT}"
    algorithm.xrpo.sharpening.max_ratio="${XRPO_MAX_RATIO}"
    # Seeded prompts carry exemplars, so they are longer than the dataset's prompts. verl's agent loop
    # left-truncates (cuts the start of) any prompt longer than rollout.prompt_length, which would cut
    # the exemplars or the instruction, and XRPO fits its seeded prompts into exactly this budget. It
    # defaults to data.max_prompt_length, so it is raised here; data.max_prompt_length still filters
    # the dataset's own prompts.
    actor_rollout_ref.rollout.prompt_length="${XRPO_PROMPT_LENGTH}"
    # Sharpening uses the step's old_log_probs, falling back to the rollout engine's log-probs.
    actor_rollout_ref.rollout.calculate_log_probs=True
)

# ---- checks -------------------------------------------------------------------------------------------
if (( PPO_MAX_TOKEN_LEN_PER_GPU < XRPO_PROMPT_LENGTH + MAX_RESPONSE_LENGTH )); then
    echo "error: PPO_MAX_TOKEN_LEN_PER_GPU=${PPO_MAX_TOKEN_LEN_PER_GPU} must hold one full sequence:" \
        "XRPO_PROMPT_LENGTH + MAX_RESPONSE_LENGTH = $(( XRPO_PROMPT_LENGTH + MAX_RESPONSE_LENGTH ))" >&2
    exit 1
fi
if (( XRPO_PROMPT_LENGTH < MAX_PROMPT_LENGTH )); then
    echo "error: XRPO_PROMPT_LENGTH=${XRPO_PROMPT_LENGTH} is below MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH}" >&2
    exit 1
fi
if (( TRAIN_BATCH_SIZE % PPO_MINI_BATCH_SIZE != 0 )); then
    echo "error: TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE} must be a multiple of PPO_MINI_BATCH_SIZE=${PPO_MINI_BATCH_SIZE}" >&2
    exit 1
fi

# Overrides common to every algorithm. Data, model, actor, rollout, validation and trainer settings are
# identical across the four runs; only the loss and the estimator (set by each run script) differ.
common_args() {
    local experiment=$1
    COMMON_ARGS=(
        # data
        data.train_files="${TRAIN_FILES}"
        data.val_files="${VAL_FILES}"
        data.train_batch_size="${TRAIN_BATCH_SIZE}"
        data.max_prompt_length="${MAX_PROMPT_LENGTH}"
        data.max_response_length="${MAX_RESPONSE_LENGTH}"
        data.filter_overlong_prompts=True
        data.truncation=error
        data.shuffle=True
        data.seed="${SEED}"
        # model
        actor_rollout_ref.model.path="${MODEL_PATH}"
        actor_rollout_ref.model.use_remove_padding=True
        actor_rollout_ref.model.enable_gradient_checkpointing=True
        # actor (FSDP2) and reference
        actor_rollout_ref.actor.strategy=fsdp2
        actor_rollout_ref.ref.strategy=fsdp2
        actor_rollout_ref.actor.optim.lr="${ACTOR_LR}"
        actor_rollout_ref.actor.ppo_mini_batch_size="${PPO_MINI_BATCH_SIZE}"
        actor_rollout_ref.actor.use_dynamic_bsz=True
        actor_rollout_ref.actor.ppo_max_token_len_per_gpu="${PPO_MAX_TOKEN_LEN_PER_GPU}"
        actor_rollout_ref.actor.entropy_coeff="${ENTROPY_COEFF}"
        actor_rollout_ref.actor.ulysses_sequence_parallel_size="${SP_SIZE}"
        actor_rollout_ref.actor.data_loader_seed="${SEED}"
        actor_rollout_ref.actor.fsdp_config.seed="${SEED}"
        actor_rollout_ref.actor.fsdp_config.param_offload="${ACTOR_PARAM_OFFLOAD}"
        actor_rollout_ref.actor.fsdp_config.optimizer_offload="${ACTOR_OPTIMIZER_OFFLOAD}"
        actor_rollout_ref.ref.fsdp_config.param_offload="${REF_PARAM_OFFLOAD}"
        actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True
        actor_rollout_ref.ref.log_prob_max_token_len_per_gpu="${LOG_PROB_MAX_TOKEN_LEN_PER_GPU}"
        # rollout (vLLM server mode); n and the batch size set the budget
        actor_rollout_ref.rollout.name=vllm
        actor_rollout_ref.rollout.mode=async
        actor_rollout_ref.rollout.n="${ROLLOUT_N}"
        actor_rollout_ref.rollout.temperature="${TEMPERATURE}"
        actor_rollout_ref.rollout.tensor_model_parallel_size="${ROLLOUT_TP}"
        actor_rollout_ref.rollout.gpu_memory_utilization="${ROLLOUT_GPU_MEM_UTIL}"
        actor_rollout_ref.rollout.seed="${SEED}"
        actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True
        actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="${LOG_PROB_MAX_TOKEN_LEN_PER_GPU}"
        # validation: VAL_N samples per problem on every validation set
        actor_rollout_ref.rollout.val_kwargs.n="${VAL_N}"
        actor_rollout_ref.rollout.val_kwargs.do_sample=True
        actor_rollout_ref.rollout.val_kwargs.temperature="${VAL_TEMPERATURE}"
        actor_rollout_ref.rollout.val_kwargs.top_p="${VAL_TOP_P}"
        actor_rollout_ref.rollout.val_kwargs.top_k="${VAL_TOP_K}"
        # no KL penalty in the reward (GRPO's KL is a loss term, set per algorithm)
        algorithm.use_kl_in_reward=False
        # trainer
        trainer.logger="${LOGGER}"
        trainer.project_name="${PROJECT}"
        trainer.experiment_name="${experiment}"
        trainer.default_local_dir="${CKPT_ROOT}/${PROJECT}/${experiment}"
        trainer.nnodes="${NNODES}"
        trainer.n_gpus_per_node="${NGPUS}"
        trainer.total_training_steps="${TOTAL_TRAINING_STEPS}"
        trainer.total_epochs="${TOTAL_EPOCHS}"
        trainer.save_freq="${SAVE_FREQ}"
        trainer.test_freq="${TEST_FREQ}"
        trainer.max_actor_ckpt_to_keep="${MAX_CKPT_TO_KEEP}"
        trainer.val_before_train="${VAL_BEFORE_TRAIN}"
        trainer.log_val_generations="${LOG_VAL_GENERATIONS}"
        trainer.validation_data_dir="${VAL_DUMP_DIR}"
        trainer.critic_warmup=0
    )
}

# launch NAME [extra overrides...]: runs verl with COMMON_ARGS, the script's ALGO_ARGS, then the extras.
launch() {
    local name=$1
    shift
    local experiment=${EXPERIMENT_NAME:-${name}-${MODEL}-seed${SEED}}
    common_args "${experiment}"
    local cmd=("${PYTHON}" -m verl.trainer.main_ppo "${COMMON_ARGS[@]}" "${ALGO_ARGS[@]}" "$@")
    if [[ "${DRY_RUN}" == 1 ]]; then
        cmd+=(--cfg job)
    fi
    echo "[xrpo recipe] ${name} | model=${MODEL} seed=${SEED} | budget per step:" \
        "${TRAIN_BATCH_SIZE} prompts x ${ROLLOUT_N} = $(( TRAIN_BATCH_SIZE * ROLLOUT_N )) rollouts" >&2
    printf '%q ' "${cmd[@]}" >&2
    echo >&2
    "${cmd[@]}"
}
