"""The raw JSON that ``solver/profile/run.py`` writes (stdlib only).

One document per run, rewritten after every case so that a run cut short keeps what it
measured::

    format    "shardwise-profile-raw/1"
    meta      date_utc, torch, cuda, nccl, numpy, python, backend (nccl|gloo), world,
              device (first GPU's name, or "cpu"), devices, device_memory_GB,
              env (NCCL_NVLS_ENABLE, TORCH_SYMM_MEM_DISABLE_MULTICAST)
    profile   null, or {sizes, dtype,
                gemm: [{kind: transformer|square, gemm, pass, hidden, tokens, tp, m, k, n,
                        layout (transformer: [A, B], "T" = a transposed operand; absent
                        before session 4: all "N"), flops, time_s, tflops}],
                memory: [{kernel: copy|add, buffer_bytes, bytes_moved, time_s, GBps}],
                collectives: [{op, group_size, bytes, time_s, algbw_GBps}]}
    train     [{name, shape (GPTConfig.to_dict(): hidden, layers, heads, ffn, vocab_size,
                seq_len, dropout, fusion -- one of FUSIONS; absent before session 4: "none"),
                plan, dtype, steps, warmup,
                ranks: [per rank: stage, replica, tp_rank, params, steps: [{step_s, forward_s,
                        backward_s, dp_allreduce_s, optimizer_s, loss}], peak_allocated_GB,
                        peak_reserved_GB, persistent_GB, ...],
                summary: {step_s (median over steps of the slowest rank), loss,
                          peak_allocated_GB, persistent_GB, stages: [...]}}
               | {..., skipped: reason} | {..., error: message}]
    inference [{name, shape, plan, dtype, prompt, gen, reps, ranks: [...],
                summary: {ttft_ms, tpot_ms, peak_allocated_GB, stages: [...]}} | ...]
    checks    [{name, loss_abs_err, grad_max_abs_err, param_max_abs_err, ...} |
               {name, logits_max_abs_err, tokens_equal, ...}]
    complete  true once every case ran (or was skipped)
    elapsed_s seconds since the first process started measuring
"""

from __future__ import annotations

__all__ = ["FUSIONS", "RAW_FORMAT"]

#: Format tag of the raw JSON (bumped on incompatible changes).
RAW_FORMAT = "shardwise-profile-raw/1"

#: Fusion modes of the validation runner's training step (``GPTConfig.fusion``; what each
#: fuses: :mod:`solver.profile.gpt`).
FUSIONS = ("none", "compile", "megatron")
