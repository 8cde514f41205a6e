# shardwise export --to megatron: llama3-70b, training plan TP=8 PP=2 DP=2 on 32 GPUs (h100)
# predicted 17,448 tokens/s
# flags of Megatron-LM core_v0.14.0 (NVIDIA/Megatron-LM commit 23e00ed0963c)
# Megatron derives DP from the world size: launch exactly 32 ranks; 'shardwise export --to torchrun'
#   writes per-node torchrun lines that put every rank on the device the plan names
# add your data, tokenizer, optimizer and checkpoint arguments, and the architecture details the
#   shardwise model spec does not record (normalization, biases, RoPE base)
# MEGATRON_ARGS below is valid only with CUDA_DEVICE_MAX_CONNECTIONS=1 exported: Megatron's
#   validate_args asserts it with tensor parallelism
export CUDA_DEVICE_MAX_CONNECTIONS=1
MEGATRON_ARGS=(
    # parallelism: TP=8 PP=2 DP=2 = 32 ranks; layers 39/41
    --tensor-model-parallel-size 8
    --pipeline-model-parallel-size 2
    --decoder-first-pipeline-num-layers 39
    --sequence-parallel
    --tp-comm-overlap
    # batch: 1024 sequences = 2 replicas x micro-batch 1 x 512 micro-batches
    --micro-batch-size 1
    --global-batch-size 1024
    # memory: ZeRO-1, recompute selective
    --use-distributed-optimizer
    --overlap-grad-reduce
    --recompute-granularity selective
    # model: llama3-70b
    --num-layers 80
    --hidden-size 8192
    --ffn-hidden-size 28672
    --num-attention-heads 64
    --group-query-attention
    --num-query-groups 8
    --swiglu
    --position-embedding-type rope
    --untie-embeddings-and-output-weights
    --seq-length 8192
    --max-position-embeddings 8192
    # precision: fp8
    --bf16
    --fp8-format hybrid
    --fp8-recipe delayed
)
# usage: torchrun ... pretrain_gpt.py "${MEGATRON_ARGS[@]}" --data-path ...
