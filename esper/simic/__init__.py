"""Simic: learning the controller with PPO.

    gae.py        GAE with truncation (bootstrap) distinct from termination
    losses.py     clipped surrogate (per head), clipped value loss, entropy bonus, KL, clip fraction, EV
    schedule.py   LR warmup + cosine decay
    rollout.py    (T, N) rollout storage
    ppo.py        the recurrent PPO update with an approximate-KL early stop
    rewards.py    reward components (paired gain over a host-only shadow, rents; the earlier shaped set)
    collect.py    the lockstep collection loop, RewardScaler and Learner (rounds of collect + update)
    shared_data.py  the environments' one task and data iterator (one pass drawn per step)
    env.py        one morphogenetic training environment on the core
    vec_env.py    K environments in lockstep on shared batches, with their host-only shadows
    config.py     the run's configurations (RunConfig, EnvConfig, PPOConfig) and defaults, torch-free
    training.py   a run: round/time budget, learner checkpoints, resume
    telemetry.py  per-environment event sinks, PPOUpdate events
    cli.py        ``esper ppo``: run_ppo (its flags: esper.flags.add_ppo_arguments)

Importing this package imports nothing else; import the modules you need.
"""
