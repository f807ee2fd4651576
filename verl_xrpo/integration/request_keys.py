"""Names shared by the trainer side and the agent-loop worker, in a module that imports nothing.

The worker module (``rollout.py``) imports verl, and ``import verl`` loads this plugin, which loads
the trainer: had the trainer imported these names from ``rollout.py``, a Ray worker process whose
first import is ``rollout.py`` would hit a circular import.
"""

# Per-prompt fields of a later phase's submission, read by XRPOAgentLoopWorker and verl's _run_prompt.
SESSION_OFFSET_KEY = "__session_offset__"  # sessions the prompt already has
ROLLOUT_N_KEY = "__rollout_n__"  # rollouts for this prompt in this submission
SUBMISSION_KEY = "__xrpo_submission__"  # names the submission, so the worker can report it settled

# verl's actor_rollout_ref.rollout.agent.agent_loop_manager_class for XRPO runs.
MANAGER_PATH = "verl_xrpo.integration.rollout.XRPOAgentLoopManager"
