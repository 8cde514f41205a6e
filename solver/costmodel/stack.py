"""The software stack a workload trains or serves on, as far as the cost model prices it.

Today's default (``Stack()``): fused (flash) attention -- FlashAttention-2/3, cuDNN fused
attention or PyTorch SDPA, what Megatron-Core/Transformer Engine, torchtitan, NeMo and every
serving engine run -- and no dropout (Llama 3, Mistral, Qwen and GPT-NeoX pre-train without
it).  The 2021 stack of the Megatron-LM tables (Narayanan et al. 2021, Korthikanti et al.
2022) is ``MEGATRON_2021``: the un-fused attention core with its s x s scores in HBM and
dropout 0.1.  A workload names its stack with ``attention`` and ``dropout``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..specs import AttentionKernel, InferenceWorkload, Model, TrainingWorkload
from .params import has_bias

__all__ = ["MEGATRON_2021", "MODERN", "Stack", "stack_of"]


@dataclass(frozen=True)
class Stack:
    """The kernel choices that change FLOPs, HBM traffic and stored activations.

    Attributes
    ----------
    attention
        ``"flash"``: the attention core is one fused kernel; the s x s scores live in on-chip
        memory only, the backward recomputes them (Dao 2023, FlashAttention-2, Sec. 3), and
        a causal mask skips the blocks above the diagonal.  ``"unfused"``: Megatron-LM 2021's
        QK^T, scale-mask-softmax, dropout and AV as separate kernels over an s x s tensor in
        HBM, the full square computed.
    dropout
        Attention- and hidden-dropout probability; above 0 the dropout masks (1 byte per
        element) are stored for the backward and the kernels read and write them.
    recompute_early_stop
        Full recompute stops once every saved tensor is rebuilt (PyTorch's non-reentrant
        ``torch.utils.checkpoint``, default ``early_stop=True``: torchtitan, Hugging Face), so
        the block's last GEMM -- the MLP down-projection, whose output no backward needs --
        and the all-reduce after it are not recomputed.  False: Megatron-LM's reentrant
        ``CheckpointFunction`` re-runs the whole forward.
    kernels
        ``"fused"``: RMSNorm/LayerNorm, RoPE, SwiGLU and the cross entropy as one kernel each
        (Megatron-Core, Transformer Engine, torch.compile).  ``"eager"``: the PyTorch op
        sequences of Hugging Face transformers / torchtitan without compile, which re-read
        and re-write their operands, some in fp32 (``EAGER_*_BYTES``).  ``"compiled_blocks"``:
        each transformer block compiled on its own (torchtitan's ``apply_compile``:
        ``torch.compile(transformer_block, fullgraph=True)`` per block), so the blocks run
        fused kernels while the final norm, LM head and cross entropy stay eager.
    attention_kernel
        Which fused attention kernel runs (with ``attention="flash"``): ``"cudnn"`` at the
        GPU's ``attention_efficiency`` (cuDNN fused attention: Transformer Engine, NeMo,
        PyTorch SDPA where it prefers cuDNN), ``"flash2"`` at its
        ``flash2_attention_efficiency`` (FlashAttention-2: PyTorch SDPA's FLASH backend,
        first in SDPA's priority order -- ``sdp_utils.cpp`` ``default_order``: flash,
        efficient, math, cudnn, pytorch/pytorch#138907 -- and what torchtitan ran on H100).
    fused_norm
        The RMSNorms are one fused kernel (saving the 16-bit input and the per-row rstd)
        even with ``kernels="eager"``: torchtitan's ``norm_type = "fused_rmsnorm"``
        (``TritonFusedRMSNorm``, ``ctx.save_for_backward(x, weight, rstd)``, torchtitan
        ``torchtitan/models/norms.py`` at 395a526).
    compiled_loss
        The loss is compiled (torchtitan's ``build_cross_entropy_loss`` under
        ``training.compile``, torchtitan bbb1b61 onwards): its traffic is a fused loss's
        (``CROSS_ENTROPY_BYTES`` / ``CROSS_ENTROPY_BWD_BYTES``) and its memory peak
        ``COMPILED_LOGIT_PEAK_BYTES`` per logit (measured; under TP's ``loss_parallel`` the
        eager peak is kept, unmeasured).
    fp8_recipe
        FP8 scaling of the GEMM operands; ``"none"`` unless the workload's precision is fp8.
        ``"tensorwise"``: one dynamic scale per tensor (torchao's tensorwise recipe).
        ``"rowwise"``: torchao's rowwise recipe, priced by
        :data:`solver.costmodel.compute.FP8_ROWWISE_EXTRA_CAST_BYTES`.  ``"delayed"``:
        Transformer Engine's delayed scaling (NeMo, Megatron-Core), whose linears save their
        FP8-cast input for the weight-gradient GEMM instead of the 16-bit one
        (:func:`solver.costmodel.memory.block_activation_bytes`).
    """

    attention: AttentionKernel = "flash"
    dropout: float = 0.0
    recompute_early_stop: bool = True
    kernels: Literal["fused", "eager", "compiled_blocks"] = "fused"
    attention_kernel: Literal["cudnn", "flash2"] = "cudnn"
    fp8_recipe: Literal["none", "tensorwise", "rowwise", "delayed"] = "none"
    fused_norm: bool = False
    compiled_loss: bool = False

    @property
    def te_fp8(self) -> bool:
        """Transformer Engine FP8 linears (delayed scaling) are in use."""
        return self.fp8_recipe == "delayed"

    @property
    def flash(self) -> bool:
        return self.attention == "flash"

    @property
    def has_dropout(self) -> bool:
        return self.dropout > 0.0

    @property
    def eager(self) -> bool:
        return self.kernels == "eager"

    @property
    def eager_head(self) -> bool:
        """The final norm, LM head and loss run eager (everything but fully fused stacks)."""
        return self.kernels != "fused"

    @property
    def pytorch_tp(self) -> bool:
        """Tensor parallelism is PyTorch's DTensor ``parallelize_module`` (the PyTorch-native
        stacks, eager or with compiled blocks: torchtitan), not Megatron-LM's: the loss is
        ``loss_parallel``, and a column-parallel linear after a sequence-parallel region gets
        its input all-gathered by a separate autograd op (``PrepareModuleInput`` before the
        attention and the MLP, ``ColwiseParallel(input_layouts=Shard(1))`` on the LM head),
        so ``F.linear`` saves the gathered, whole-sequence input (Megatron's SP linear saves
        the shard and re-gathers it in the backward).  torchtitan ``apply_tp`` in
        ``parallelize_llama.py`` at 9dec370."""
        return self.kernels != "fused"

    def eager_rmsnorm(self, model: Model) -> bool:
        """Whether ``model``'s norms run as eager RMSNorm op sequences (Llama-style models
        norm with RMSNorm; GPT's LayerNorm is one ``F.layer_norm`` kernel either way)."""
        return self.eager and not has_bias(model) and not self.fused_norm

    def eager_head_rmsnorm(self, model: Model) -> bool:
        """Whether the final norm runs as an eager RMSNorm op sequence."""
        return self.eager_head and not has_bias(model) and not self.fused_norm


#: Today's stack: fused attention, no dropout.
MODERN = Stack()
#: Megatron-LM 2021 (the published 2021 tables): un-fused attention, dropout 0.1.
MEGATRON_2021 = Stack(attention="unfused", dropout=0.1, recompute_early_stop=False)


def stack_of(workload: TrainingWorkload | InferenceWorkload) -> Stack:
    """The stack a workload runs on (inference: no dropout, eval mode)."""
    if isinstance(workload, TrainingWorkload):
        return Stack(
            attention=workload.attention,
            dropout=workload.dropout,
            recompute_early_stop=workload.recompute_early_stop,
            kernels=workload.elementwise_kernels,
            attention_kernel=workload.attention_kernel,
            fp8_recipe=workload.fp8_recipe if workload.precision == "fp8" else "none",
            fused_norm=workload.fused_norm,
            compiled_loss=workload.compiled_loss,
        )
    return Stack(attention=workload.attention, dropout=0.0)
