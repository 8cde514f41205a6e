"""Measure a machine (``shardwise profile``) and check the cost model against real runs
(``shardwise validate``).

Two halves with different dependencies, so that the measuring half runs on a GPU machine that
has only PyTorch and numpy:

* **device side** -- imports only torch, numpy and the standard library (never pydantic, yaml,
  typer, rich, ortools or scipy, and nothing else from :mod:`solver`):
  :mod:`~solver.profile.env` (process groups, NCCL settings), :mod:`~solver.profile.timing`,
  :mod:`~solver.profile.tensor_parallel` (Megatron f/g functions, vocab-parallel loss),
  :mod:`~solver.profile.gpt` (a GPT decoder stack from plain torch ops),
  :mod:`~solver.profile.schedule` (1F1B over send/recv), :mod:`~solver.profile.bench`
  (GEMM, memory and collective micro-benchmarks), :mod:`~solver.profile.cases` (train and
  inference cases of a plan, correctness checks), :mod:`~solver.profile.driver` (one process
  per GPU, raw JSON) and the entry point ``solver/profile/run.py``; the serving
  micro-benchmark (``shardwise profile --serving``): :mod:`~solver.profile.serving` (entry,
  summary) with its sections :mod:`~solver.profile.serving_timing`,
  :mod:`~solver.profile.serving_shapes`, :mod:`~solver.profile.serving_gemm`,
  :mod:`~solver.profile.serving_attention` and :mod:`~solver.profile.serving_steps`;
  :mod:`~solver.profile.fit` (least-squares alpha-beta and throughput fits) is numpy only.
* **host side** -- :mod:`~solver.profile.calibrate` (raw JSON -> :class:`~solver.specs.Calibration`)
  and :mod:`~solver.profile.compare` (measured vs predicted by the evaluator), which use the
  solver's specs and evaluator.

This ``__init__`` imports nothing, so ``python solver/profile/run.py`` can load the device side
without the solver's other dependencies.
"""
