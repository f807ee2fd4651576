"""XRPO's phases through verl's real agent-loop workers, Ray and TransferQueue (no model needed).

verl's ``AgentLoopWorkerTQ`` (XRPO's subclass) runs a scripted agent loop in a Ray actor and writes
trajectories to a real TransferQueue; verl's own ``_submit_batch_to_rollout`` and ``ReplayBuffer``
submit and collect them. The tests check what training relies on: budget, grouping, unique keys,
seeding of all-fail prompts, and the bank learning from correct rollouts.
"""

from __future__ import annotations

import functools
import logging
import time
import types

import numpy as np
import pytest
import ray
import transfer_queue as tq
from omegaconf import OmegaConf, open_dict
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl.trainer.ppo.v1.trainer_base import PPOTrainer
from verl.utils import tensordict_utils as tu

from verl_xrpo.config import XRPOConfig
from verl_xrpo.core.bank import ExemplarBank
from verl_xrpo.core.history import PromptHistory
from verl_xrpo.core.planner import RolloutPlanner
from verl_xrpo.integration import transfer_queue as xtq
from verl_xrpo.integration.phases import PhasedRollout, WorkerNews
from verl_xrpo.integration.rollout import XRPOAgentLoopManager

from .conftest import ROLLOUT_N


@pytest.fixture(scope="module")
def manager(verl_config):
    return XRPOAgentLoopManager.create(
        config=verl_config, llm_client=None, teacher_client=None, reward_loop_worker_handles=None
    )


@functools.cache
def worker_news(manager):
    """One per manager, as the trainer keeps one: a wait left out by a step passes its news on."""
    return WorkerNews(manager)


def prompt_batch(rates: list[float], step: int, names: list[str], faults: dict[int, dict] | None = None):
    """``faults[i]`` adds the scripted agent loop's fault flags to prompt i (fail_sessions, ...)."""
    questions = [f"How many {name} are in the box after adding three more?" for name in names]
    batch = tu.get_tensordict(
        {
            "raw_prompt": np.array([[{"role": "user", "content": q}] for q in questions], dtype=object),
            "uid": np.array([f"u{step}x{i}" for i in range(len(rates))], dtype=object),
            "index": np.arange(len(rates)),
            "extra_info": np.array(
                [
                    {"rate": r, "name": n, "seeded_rate": 1.0, "question": q, **(faults or {}).get(i, {})}
                    for i, (r, n, q) in enumerate(zip(rates, names, questions, strict=True))
                ],
                dtype=object,
            ),
        }
    )
    tu.assign_non_tensor_data(batch, "global_steps", step)
    return batch


def counted(submit, calls: list | None):
    """``submit`` that also appends each call's number of prompts to ``calls``."""
    if calls is None:
        return submit

    def submit_and_count(batch):
        calls.append(len(batch["uid"]))
        return submit(batch)

    return submit_and_count


def verl_submit(manager, step):
    """verl's own PPOTrainer._submit_batch_to_rollout, bound to the little state it reads."""
    state = types.SimpleNamespace(trainer_mode="sync", global_steps=step, agent_loop_manager=manager)
    return lambda batch: PPOTrainer._submit_batch_to_rollout(state, batch)


def run_step(
    verl_config, manager, step, rates, names, bank, faults=None, history=None, submissions=None, **xrpo
):
    """One step's phases; ``xrpo`` overrides settings, e.g. ``seeding={"control_share": 0.5}``;
    ``submissions`` (a list) collects each generation call's prompt count."""
    values = OmegaConf.to_container(verl_config.algorithm.xrpo)
    for key, changes in xrpo.items():
        if isinstance(changes, dict):
            values[key].update(changes)
        else:
            values[key] = changes
    settings = XRPOConfig.from_mapping(values)
    planner = RolloutPlanner(settings.planning, ROLLOUT_N)
    tokenizer = manager_tokenizer(verl_config)
    phases = PhasedRollout(
        settings,
        planner,
        bank,
        tokenizer,
        max_prompt_tokens=400,
        submit=counted(verl_submit(manager, step), submissions),
        news=worker_news(manager),
        history=history,
    )
    batch = prompt_batch(rates, step, names, faults)
    return batch, phases.run(batch, step=step)


def manager_tokenizer(verl_config):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(verl_config.actor_rollout_ref.model.path)


def sample_all(verl_config, num_prompts, step):
    """What verl's sync trainer gets from its replay buffer for this step."""
    sampler = verl_config.trainer.v1.sampler
    buffer = ReplayBuffer(
        trainer_mode="sync",
        trainer_config={},
        max_off_policy_threshold=sampler.max_off_policy_threshold,
        max_off_policy_strategy=sampler.max_off_policy_strategy,
        sampler_kwargs=sampler.sampler_kwargs,
        train_batch_size=num_prompts,
        gen_batch_size=num_prompts,
    )
    batch, _ = buffer.sample(global_steps=step, partition_id="train", batch_size=num_prompts)
    return list(batch.keys)


def test_phases_conserve_budget_and_keep_groups_whole(verl_config, manager):
    rates = [0.5, 0.5, 0.9, 0.2, 0.0, 1.0, 0.6, 0.4]
    names = [f"item{i}" for i in range(len(rates))]
    batch, report = run_step(verl_config, manager, 1, rates, names, bank=None)
    uids = [str(u) for u in batch["uid"]]

    keys = sample_all(verl_config, len(uids), step=1)
    assert len(keys) == len(set(keys)) == len(uids) * ROLLOUT_N  # GRPO's budget, no key overwritten
    sessions = {uid: sorted(xtq.split_key(k)[1] for k in keys if k.startswith(uid + "_")) for uid in uids}
    for uid in uids:
        assert sessions[uid] == list(range(len(sessions[uid])))  # phases continue each prompt's sessions
        assert 3 <= len(sessions[uid]) <= 2 * ROLLOUT_N
    assert len({len(s) for s in sessions.values()}) > 1  # the planner did not hand out a uniform n
    stored = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["uid", "session_id"])
    for key, uid, session in zip(keys, stored["uid"], stored["session_id"], strict=True):
        assert key.startswith(f"{uid}_{session}_")  # one prompt group per uid, as verl's estimator sees it
    assert report.rollouts == len(keys)
    assert report.metrics["xrpo/rollouts_per_prompt/mean"] == ROLLOUT_N
    assert report.metrics["xrpo/phases_run"] == verl_config.algorithm.xrpo.planning.num_phases
    mixed = [u for u, r in zip(uids, rates, strict=True) if 0 < r < 1]
    assert np.mean([len(sessions[u]) for u in mixed]) > ROLLOUT_N - 1
    tq.kv_clear(keys=keys, partition_id="train")


def test_with_two_workers_every_phase_hears_from_both_over_two_steps(verl_config):
    """A wait ends at the first worker's news; the other worker's call stays out and hands its news
    to a later wait, in this step or the next. Lost news would leave a phase waiting to time out."""
    config = verl_config.copy()
    with open_dict(config):
        config.actor_rollout_ref.rollout.agent.num_workers = 2
    two = XRPOAgentLoopManager.create(
        config=config, llm_client=None, teacher_client=None, reward_loop_worker_handles=None
    )
    assert len(two.agent_loop_workers) == 2
    for step in (31, 32):
        rates = [0.5, 0.2, 0.8, 0.5, 0.0, 0.6]
        batch, report = run_step(
            config, two, step, rates, [f"two{i}" for i in range(6)], bank=None, phase_timeout_seconds=20
        )
        uids = [str(u) for u in batch["uid"]]
        keys = sample_all(config, len(uids), step=step)
        assert len(keys) == len(set(keys)) == len(uids) * ROLLOUT_N
        assert report.metrics["xrpo/phases_run"] == config.algorithm.xrpo.planning.num_phases
        tq.kv_clear(keys=keys, partition_id="train")
    for worker in two.agent_loop_workers:
        ray.kill(worker)


def one_exemplar_bank() -> ExemplarBank:
    """A bank with one solved question like the test prompts, so that any of them retrieves it."""
    bank = ExemplarBank(max_size=100)
    bank.add("How many apples are in the box after adding three more?", "Count them: 4 + 3 = 7.")
    return bank


def test_all_fail_prompts_are_seeded_and_the_bank_learns(verl_config, manager):
    bank = one_exemplar_bank()
    # a validation question: its solutions never join the bank, and the step counts them
    bank.block_questions(["How many limes are in the box after adding three more?"])
    rates = [0.0, 0.0, 0.5, 0.5]
    names = ["pears", "plums", "limes", "figs"]
    batch, report = run_step(verl_config, manager, 2, rates, names, bank=bank)
    uids = [str(u) for u in batch["uid"]]
    keys = sample_all(verl_config, len(uids), step=2)
    assert len(keys) == len(uids) * ROLLOUT_N
    assert report.metrics["xrpo/seeding/prompts_seeded"] >= 1
    assert report.metrics["xrpo/seeding/prompts_with_seeded_success"] >= 1
    stored = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["raw_prompt", "uid"])
    originals = {str(u): p[-1]["content"] for u, p in zip(batch["uid"], batch["raw_prompt"], strict=True)}
    seeded_uids = {
        uid
        for prompt, uid in zip(stored["raw_prompt"], stored["uid"], strict=True)
        if prompt[-1]["content"] != originals[uid]
    }
    # Seeded rollouts are stored (and trained) with the context they were sampled under, and only
    # prompts whose rollouts all failed were seeded.
    assert seeded_uids and seeded_uids <= {uids[0], uids[1]}
    assert report.metrics["xrpo/bank_size"] > 1  # correct rollouts of this step joined the bank
    assert any("figs" in e.question or "pears" in e.question for e in bank_entries(bank))
    assert not any("limes" in e.question for e in bank_entries(bank))
    assert report.metrics["xrpo/bank_refused_leaks"] >= 1  # limes succeeds at rate 0.5 over 4-16 rollouts
    tq.kv_clear(keys=keys, partition_id="train")


def bank_entries(bank):
    return [
        ex
        for hits in bank.retrieve(["How many limes figs pears plums are in the box"], k=10)
        for ex, _ in hits
    ]


def test_a_phase_over_every_prompt_does_not_seed_the_next_phase(verl_config, manager):
    """Seeded prompts of a phase that covers every prompt stay that phase's: the step's batch is untouched.

    Every prompt fails unseeded and succeeds seeded, so phase 2 (which reaches all four prompts)
    seeds them all, and phase 3 seeds none of them (each has a success by then). Every stored
    rollout sampled under exemplars must be counted as seeded, and phase 3 must use the originals.
    """
    bank = one_exemplar_bank()
    names = ["kiwis", "dates", "yams", "nuts"]
    batch, report = run_step(verl_config, manager, 3, [0.0] * len(names), names, bank=bank)
    originals = {str(u): p[-1]["content"] for u, p in zip(batch["uid"], batch["raw_prompt"], strict=True)}
    assert all("apples" not in text for text in originals.values())  # the caller's batch is unchanged
    keys = sample_all(verl_config, len(names), step=3)
    stored = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["raw_prompt", "uid"])
    sampled_seeded = sum(
        prompt[-1]["content"] != originals[str(uid)]
        for prompt, uid in zip(stored["raw_prompt"], stored["uid"], strict=True)
    )
    assert report.metrics["xrpo/phases_run"] == 3
    assert report.metrics["xrpo/seeding/prompts_seeded"] == len(names)
    assert sampled_seeded == report.metrics["xrpo/seeding/seeded_rollouts"]
    assert sampled_seeded < len(keys) - len(names) * 3  # phase 3 ran unseeded
    tq.kv_clear(keys=keys, partition_id="train")


def seeded_uids_of(batch, keys):
    """uid of every stored rollout that was sampled with exemplars in its prompt."""
    originals = {str(u): p[-1]["content"] for u, p in zip(batch["uid"], batch["raw_prompt"], strict=True)}
    stored = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["raw_prompt", "uid"])
    return [
        str(uid)
        for prompt, uid in zip(stored["raw_prompt"], stored["uid"], strict=True)
        if prompt[-1]["content"] != originals[str(uid)]
    ]


def test_every_prompt_failing_phase_one_is_seeded_at_the_default_ucb_weight(verl_config, manager):
    """Seeding's own share: at ucb_lambda=0.05 the planner gives all-fail prompts nothing, seeding does."""
    bank = one_exemplar_bank()
    rates = [0.0, 0.0, 0.0, 0.5, 0.5, 0.6]
    names = ["cats", "dogs", "owls", "bees", "ants", "elks"]
    batch, report = run_step(verl_config, manager, 4, rates, names, bank=bank, planning={"ucb_lambda": 0.05})
    uids = [str(u) for u in batch["uid"]]
    keys = sample_all(verl_config, len(uids), step=4)
    assert len(keys) == len(set(keys)) == len(uids) * ROLLOUT_N  # still exactly GRPO's budget
    seeded = seeded_uids_of(batch, keys)
    assert set(seeded) == set(uids[:3])  # each all-fail prompt, and only those
    # 3 prompts x 2 rollouts (the default) is above a quarter of the later phases' 6 x 3 = 18
    # rollouts, so the cap, int(4.5) = 4, applies: still at least one seeded rollout each.
    assert report.metrics["xrpo/budget/seeding_rollouts"] == 4
    assert report.metrics["xrpo/seeding/prompts_seeded"] == 3
    assert report.metrics["xrpo/seeding/seeded_rollouts"] == len(seeded) >= 4
    budget = report.metrics
    assert budget["xrpo/budget/rollouts_mixed"] + budget["xrpo/budget/rollouts_all_fail"] + budget[
        "xrpo/budget/rollouts_all_correct"
    ] == len(keys)
    assert budget["xrpo/budget/mixed_group_rollout_share"] == budget["xrpo/budget/rollouts_mixed"] / len(keys)
    tq.kv_clear(keys=keys, partition_id="train")


def test_prompts_that_agreed_last_time_get_their_base_and_free_the_rest_of_the_budget(verl_config, manager):
    rates = [0.0, 1.0, 0.5, 0.5, 0.5, 0.5]
    names = [f"crate{i}" for i in range(len(rates))]
    history, skip = PromptHistory(), {"planning": {"skip_agreed": True, "skip_agreed_base": 2}}
    _, first = run_step(verl_config, manager, 11, rates, names, bank=None, history=history, **skip)
    assert first.metrics["xrpo/history/skipped_prompts"] == 0  # nothing known yet
    tq.kv_clear(keys=sample_all(verl_config, len(names), step=11), partition_id="train")

    batch, second = run_step(verl_config, manager, 12, rates, names, bank=None, history=history, **skip)
    uids = [str(u) for u in batch["uid"]]
    keys = sample_all(verl_config, len(names), step=12)
    assert len(keys) == len(names) * ROLLOUT_N  # GRPO's budget, all of it spent
    sessions = {uid: sum(k.startswith(uid + "_") for k in keys) for uid in uids}
    # the never-solved and always-solved prompts get their base of 2; the mixed ones take the rest
    assert [sessions[uids[0]], sessions[uids[1]]] == [2, 2]
    assert second.metrics["xrpo/history/skipped_prompts"] >= 2
    assert np.mean([sessions[u] for u in uids[2:]]) > ROLLOUT_N
    tq.kv_clear(keys=keys, partition_id="train")


def test_seedings_control_arm_draws_the_same_rollouts_without_exemplars(verl_config, manager):
    bank = one_exemplar_bank()
    names = [f"thing{i}" for i in range(10)]
    batch, report = run_step(
        verl_config, manager, 5, [0.0] * len(names), names, bank=bank, seeding={"control_share": 0.5}
    )
    keys = sample_all(verl_config, len(names), step=5)
    m = report.metrics
    assert m["xrpo/seeding/treated_rollouts"] > 0 and m["xrpo/seeding/control_rollouts"] > 0
    # scripted: seeded prompts always succeed, unseeded ones never, so the arms are told apart
    assert m["xrpo/seeding/treated_successes"] == m["xrpo/seeding/treated_rollouts"]
    assert m["xrpo/seeding/control_successes"] == 0
    seeded = set(seeded_uids_of(batch, keys))
    assert 0 < len(seeded) < len(names)  # the control prompts were never sampled with exemplars
    tq.kv_clear(keys=keys, partition_id="train")


def test_failed_generations_are_reported_and_the_step_goes_on(verl_config, manager, caplog):
    """A session that raises, an agent loop without output, a prompt whose every session raises.

    Their groups keep the rollouts that exist, they get no later phase, the other prompts get the
    rest of the budget, and the metrics and the log say what was lost.
    """
    rates = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    names = [f"fault{i}" for i in range(len(rates))]
    faults = {0: {"fail_sessions": [1]}, 1: {"empty_sessions": [0, 1, 2]}, 2: {"fail_sessions": [0, 1, 2]}}
    with caplog.at_level(logging.WARNING, logger="verl_xrpo.integration.phases"):
        batch, report = run_step(verl_config, manager, 6, rates, names, bank=None, faults=faults)
    uids = [str(u) for u in batch["uid"]]
    keys = sample_all(verl_config, len(uids), step=6)  # verl's replay buffer takes the step as it is
    sessions = {uid: sorted(xtq.split_key(k)[1] for k in keys if k.startswith(uid + "_")) for uid in uids}
    assert sessions[uids[0]] == [0, 2]  # phase 1's surviving rollouts, and no later phase
    assert sessions[uids[1]] == sessions[uids[2]] == []
    m = report.metrics
    assert (m["xrpo/faults/failed_prompts"], m["xrpo/faults/missing_rollouts"]) == (3, 1 + 3 + 3)
    assert report.rollouts == len(keys) == len(uids) * ROLLOUT_N - 7
    assert m["xrpo/budget/rollouts_lost"] == 7  # the healthy prompts took the failed ones' share
    assert all(len(sessions[uid]) > 3 for uid in uids[3:])
    assert m["xrpo/rollouts_per_prompt/min"] == 0
    [warning] = [r.getMessage() for r in caplog.records if "generation failed" in r.getMessage()]
    assert "step 6 phase 1: generation failed for 3 of 6 prompts" in warning
    assert f"{uids[0]} 'How many fault0" in warning and "failure with 2 of 3 rollouts" in warning
    assert "finished with 0 of 3 rollouts" in warning
    tq.kv_clear(keys=keys, partition_id="train")


def test_a_step_where_every_generation_failed_is_an_error(verl_config, manager):
    faults = {i: {"fail_sessions": [0, 1, 2]} for i in range(2)}
    with pytest.raises(RuntimeError, match="step 7: none of the 2 prompts got a rollout"):
        run_step(verl_config, manager, 7, [0.5, 0.5], ["dead0", "dead1"], bank=None, faults=faults)
    tq.kv_clear(keys=[f"u7x{i}" for i in range(2)], partition_id="train")


def test_a_hung_prompt_fails_the_step_naming_the_phase_and_the_prompt(verl_config, manager):
    names = ["quick0", "stuck1", "quick2"]
    started = time.monotonic()
    with pytest.raises(xtq.PhaseTimeout) as raised:
        run_step(
            verl_config,
            manager,
            8,
            [0.5] * 3,
            names,
            bank=None,
            faults={1: {"hang": True}},
            phase_timeout_seconds=2,
        )
    message = str(raised.value)
    assert 2 <= time.monotonic() - started < 30
    assert message.startswith("XRPO step 8 phase 1: 1 of 3 prompts still generating after 2 s")
    assert "algorithm.xrpo.phase_timeout_seconds=2" in message
    assert "u8x1 (running: 'How many stuck1 are in the box" in message and "u8x0" not in message
    done = [k for k in tq.kv_list("train")["train"] if k.startswith(("u8x0_", "u8x2_"))]
    tq.kv_clear(keys=[*done, "u8x0", "u8x1", "u8x2"], partition_id="train")


def test_each_phase_reports_when_its_first_three_quarters_and_last_rollouts_ended(verl_config, manager):
    """One phase-1 rollout of twelve takes 3 s more: phase 1's last end is seconds after its
    three-quarter end (the tail an overlap could hide); every phase's ends come in order. (The
    margin covers a cold worker, whose sessions start one after another over a second or so.)"""
    names = [f"tail{i}" for i in range(4)]
    slow = {0: {"slow_sessions": [0], "slow_seconds": 3.0}}
    _, report = run_step(verl_config, manager, 41, [0.5] * 4, names, bank=None, faults=slow)
    timing = report.metrics
    assert timing["timing_s/xrpo_phase1_last_end"] - timing["timing_s/xrpo_phase1_75pct_end"] >= 2.0
    for phase in range(1, int(timing["xrpo/phases_run"]) + 1):
        ends = [timing[f"timing_s/xrpo_phase{phase}_{end}_end"] for end in ("first", "75pct", "last")]
        assert 0 < ends[0] <= ends[1] <= ends[2]
    tq.kv_clear(keys=sample_all(verl_config, len(names), step=41), partition_id="train")


def waits_for_phase_two(step):
    """Fault flags: the prompt's session 0 returns only once a later phase's rollout is stored."""
    return {"wait_sessions": [0], "wait_prefix": f"u{step}x", "wait_until_session": 3}  # n_base=3


def test_an_overlapped_phase_starts_before_the_last_rollout_of_the_one_before(verl_config, manager):
    """With overlap_share=0.5 phase 2 is planned and sent while a phase-1 rollout is still running;
    the budget, the groups and the session numbering stay as under the barrier."""
    names = ["lag2", "item1", "item2", "item3", "item4", "item5"]
    overlap = {"planning": {"overlap_share": 0.5}, "phase_timeout_seconds": 30}
    batch, report = run_step(
        verl_config, manager, 21, [0.5] * 6, names, bank=None, faults={0: waits_for_phase_two(21)}, **overlap
    )
    uids = [str(u) for u in batch["uid"]]
    keys = sample_all(verl_config, len(uids), step=21)
    assert len(keys) == len(set(keys)) == len(uids) * ROLLOUT_N  # GRPO's budget, no key overwritten
    sessions = {uid: sorted(xtq.split_key(k)[1] for k in keys if k.startswith(uid + "_")) for uid in uids}
    for uid in uids:
        assert sessions[uid] == list(range(len(sessions[uid])))
    assert 0 in sessions[uids[0]]  # the late rollout is in the group
    assert report.metrics["xrpo/faults/failed_prompts"] == 0
    assert report.metrics["xrpo/phases_run"] == 3
    tq.kv_clear(keys=keys, partition_id="train")


def test_an_overlapped_phase_seeds_a_failing_prompt_whose_last_rollout_still_runs(verl_config, manager):
    """Prompt 0 failed both phase-1 rollouts that are in, its third still runs when phase 2 is
    planned: it is seeded in phase 2 (seeding's own share), not left to wait for its slowest one."""
    bank = one_exemplar_bank()
    names = ["pears", "item1", "item2", "item3", "item4", "item5"]
    overlap = {"planning": {"overlap_share": 0.5}, "phase_timeout_seconds": 30}
    batch, report = run_step(
        verl_config,
        manager,
        24,
        [0.0] + [1.0] * 5,
        names,
        bank=bank,
        faults={0: waits_for_phase_two(24)},
        **overlap,
    )
    uids = [str(u) for u in batch["uid"]]
    keys = sample_all(verl_config, len(uids), step=24)
    assert len(keys) == len(uids) * ROLLOUT_N
    assert report.metrics["xrpo/seeding/prompts_seeded"] == 1  # prompt 0: the others never fail
    assert report.metrics["xrpo/seeding/treated_rollouts"] > 0  # qualified when phase 2 was planned
    stored = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["raw_prompt", "uid"])
    original = {str(u): p[-1]["content"] for u, p in zip(batch["uid"], batch["raw_prompt"], strict=True)}
    seeded = {
        u for p, u in zip(stored["raw_prompt"], stored["uid"], strict=True) if p[-1]["content"] != original[u]
    }
    assert seeded == {uids[0]}
    tq.kv_clear(keys=keys, partition_id="train")


def test_the_same_late_rollout_under_the_barrier_times_out(verl_config, manager):
    """The control of the test above: waiting for all of phase 1 never sees phase 2."""
    with pytest.raises(xtq.PhaseTimeout, match="step 22 phase 1: 1 of 6 prompts still generating"):
        run_step(
            verl_config,
            manager,
            22,
            [0.5] * 6,
            ["lag2", "item1", "item2", "item3", "item4", "item5"],
            bank=None,
            faults={0: waits_for_phase_two(22)},
            phase_timeout_seconds=3,
        )
    listed = tq.kv_list("train")["train"]
    tq.kv_clear(keys=[k for k in listed if k.startswith("u22x")], partition_id="train")


def test_a_failure_seen_after_a_later_phase_was_sent_stays_the_prompts_status(verl_config, manager):
    """Prompt 0's phase 1 fails (session 0 raises) but settles only after phase 2 is out, so it
    gets phase-2 rollouts, whose own "finished" could overwrite verl's status of it."""
    faults = {0: {**waits_for_phase_two(23), "wait_sessions": [2], "fail_sessions": [0]}}
    names = ["lag5", "item1", "item2", "item3", "item4", "item5"]
    overlap = {"planning": {"overlap_share": 0.5}, "phase_timeout_seconds": 30}
    batch, report = run_step(
        verl_config, manager, 23, [0.5] + [1.0] * 5, names, bank=None, faults=faults, **overlap
    )
    uids = [str(u) for u in batch["uid"]]
    assert tq.kv_list("train")["train"][uids[0]]["status"] == "failure"  # what verl's buffer reads
    keys = sample_all(verl_config, len(uids), step=23)
    sessions = sorted(xtq.split_key(k)[1] for k in keys if k.startswith(uids[0] + "_"))
    assert sessions[:2] == [1, 2] and sessions[-1] >= 3  # phase 1 less session 0, then later rollouts
    assert report.metrics["xrpo/faults/failed_prompts"] == 1
    assert report.metrics["xrpo/faults/missing_rollouts"] == 1
    tq.kv_clear(keys=keys, partition_id="train")


# the default UCB weight (this module's config raises it to 1.0 for the phases' tests)
SUBMISSION = {"planning": {"mode": "submission", "ucb_lambda": 0.01}}


def test_submission_mode_makes_one_generation_call_per_step_and_plans_from_history(verl_config, manager):
    rates = [0.0, 1.0, 0.5, 0.5, 0.5, 0.5]
    names = [f"parcel{i}" for i in range(len(rates))]
    history = PromptHistory()
    calls: list[int] = []
    batch, first = run_step(
        verl_config, manager, 41, rates, names, bank=None, history=history, submissions=calls, **SUBMISSION
    )
    uids = [str(u) for u in batch["uid"]]
    keys = sample_all(verl_config, len(names), step=41)
    sessions = [sum(k.startswith(uid + "_") for k in keys) for uid in uids]
    assert calls == [len(names)] and first.metrics["xrpo/phases_run"] == 1
    assert sessions == [ROLLOUT_N] * len(names)  # nothing known yet: GRPO's uniform count
    tq.kv_clear(keys=keys, partition_id="train")

    batch, _ = run_step(
        verl_config, manager, 42, rates, names, bank=None, history=history, submissions=calls, **SUBMISSION
    )
    uids = [str(u) for u in batch["uid"]]
    keys = sample_all(verl_config, len(names), step=42)
    sessions = [sum(k.startswith(uid + "_") for k in keys) for uid in uids]
    assert calls == [len(names), len(names)]  # one call a step
    assert sum(sessions) == len(names) * ROLLOUT_N and len(set(sessions)) > 1
    # the never-solved and always-solved prompts get the least, the mixed ones the most
    assert max(sessions[:2]) < min(sessions[2:])
    tq.kv_clear(keys=keys, partition_id="train")


def test_a_prompt_that_failed_everything_last_visit_is_seeded_from_the_start(verl_config, manager):
    bank = one_exemplar_bank()
    rates = [0.0, 0.5, 0.5, 0.5]
    names = ["pebbles", "shells", "coins", "stamps"]
    history = PromptHistory()
    calls: list[int] = []
    _, first = run_step(
        verl_config, manager, 43, rates, names, bank=bank, history=history, submissions=calls, **SUBMISSION
    )
    assert first.metrics["xrpo/seeding/prompts_seeded"] == 0  # no visit before
    tq.kv_clear(keys=sample_all(verl_config, len(names), step=43), partition_id="train")

    batch, second = run_step(
        verl_config, manager, 44, rates, names, bank=bank, history=history, submissions=calls, **SUBMISSION
    )
    keys = sample_all(verl_config, len(names), step=44)
    assert calls == [len(names)] * 2
    # the one that failed all of its last visit
    assert set(seeded_uids_of(batch, keys)) == {str(batch["uid"][0])}
    assert second.metrics["xrpo/seeding/prompts_seeded"] == 1
    assert second.metrics["xrpo/budget/seeding_rollouts"] >= 2
    assert second.metrics["xrpo/seeding/prompts_with_seeded_success"] == 1  # the scripted loop's seeded rate
    tq.kv_clear(keys=keys, partition_id="train")


def test_seeded_groups_past_seedings_share_are_drawn_as_any_other(verl_config, manager):
    bank = one_exemplar_bank()
    rates = [0.0, 0.0, 0.0, 0.5]
    names = ["nails", "bolts", "screws", "washers"]
    history = PromptHistory()
    # a share of a tenth of the step's 24 rollouts holds one seeded group
    settings = {"planning": {"mode": "submission", "ucb_lambda": 0.01}, "seeding": {"max_budget_share": 0.1}}
    run_step(verl_config, manager, 45, rates, names, bank=bank, history=history, **settings)
    tq.kv_clear(keys=sample_all(verl_config, len(names), step=45), partition_id="train")

    _, second = run_step(verl_config, manager, 46, rates, names, bank=bank, history=history, **settings)
    tq.kv_clear(keys=sample_all(verl_config, len(names), step=46), partition_id="train")
    assert second.metrics["xrpo/seeding/prompts_seeded"] == 1
    # the seeding experiment's treated arm is the seeded group, not the groups the share left out
    assert second.metrics["xrpo/seeding/treated_rollouts"] == second.metrics["xrpo/seeding/seeded_rollouts"]
    assert second.metrics["xrpo/budget/seeding_rollouts"] == second.metrics["xrpo/seeding/seeded_rollouts"]


# ---- XRPO's asynchronous trainer: learning from the groups verl trains ------------------------


def async_trainer_state(verl_config, manager, parameter_sync_step: int):
    """The part of ``XRPOColocateAsyncTrainer`` that learns from trained groups, without the
    workers and engines its ``__init__`` starts."""
    from verl_xrpo.integration.async_trainer import StepTrained, XRPOColocateAsyncTrainer

    trainer = object.__new__(XRPOColocateAsyncTrainer)
    trainer.xrpo = XRPOConfig.from_mapping(OmegaConf.to_container(verl_config.algorithm.xrpo))
    trainer.plans, trainer.step_trained = {}, StepTrained()
    trainer.trained_groups = trainer.trained_rollouts = 0
    trainer.history, trainer.bank = PromptHistory(), ExemplarBank(max_size=100)
    trainer.tokenizer = manager_tokenizer(verl_config)
    trainer.parameter_sync_step, trainer.local_trigger_step = parameter_sync_step, 0
    return trainer


def test_a_steps_counts_are_its_groups_totals_over_every_local_update(verl_config, manager):
    """separate_async trains a step in parameter_sync_step local updates, and verl averages each
    update's metrics over them: the step's XRPO counts must still be the step's totals."""
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.v1.utils import MetricsAggregator

    from verl_xrpo.integration.async_trainer import Plan

    step, updates = 61, 4
    rates = [0.0, 1.0, 0.5, 0.5, 0.0, 0.5, 1.0, 0.5]
    names = [f"crate{i}" for i in range(len(rates))]
    batch = prompt_batch(rates, step, names)
    verl_submit(manager, step)(batch)
    trainer = async_trainer_state(verl_config, manager, parameter_sync_step=updates)
    questions = [str(info["question"]) for info in batch["extra_info"]]
    uids = [str(u) for u in batch["uid"]]
    for uid, question in zip(uids, questions, strict=True):
        trainer.plans[uid] = Plan(question, ROLLOUT_N, False, False, False, submitted_step=step - 1)
    trainer.global_steps = step
    keys = sample_all(verl_config, len(names), step=step)

    aggregator = MetricsAggregator()
    per_update = len(uids) // updates
    for update in range(updates):  # as verl's PPOTrainer.step: one metrics dict per local update
        group_uids = uids[update * per_update : (update + 1) * per_update]
        update_keys = [k for k in keys if any(k.startswith(uid + "_") for uid in group_uids)]
        trainer.local_trigger_step = update
        metrics: dict = {}
        trainer._learn_from_trained(KVBatchMeta(keys=update_keys, tags=[{}] * len(update_keys)), metrics)
        aggregator.add_step_metrics(metrics, sample_count=len(update_keys))
    reported = aggregator.get_aggregated_metrics()
    tq.kv_clear(keys=keys, partition_id="train")

    budget = [
        "xrpo/budget/rollouts_mixed",
        "xrpo/budget/rollouts_all_fail",
        "xrpo/budget/rollouts_all_correct",
    ]
    assert sum(reported[key] for key in budget) == len(uids) * ROLLOUT_N
    assert reported["xrpo/budget/rollouts_all_fail"] >= 2 * ROLLOUT_N  # the two prompts at rate 0
    assert reported["xrpo/rollouts_per_prompt/mean"] == ROLLOUT_N
    assert reported["xrpo/budget/rollouts_per_trained_prompt/cumulative"] == ROLLOUT_N
    assert reported["xrpo/async/submitted_steps_ago/mean"] == 1
    assert reported["xrpo/async/plans_in_flight"] == 0 and reported["xrpo/async/unplanned_groups"] == 0
    assert trainer.trained_groups == len(uids) and all(trainer.history.seen(q) for q in questions)
