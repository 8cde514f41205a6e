# shardwise export --to megatron: gpt-39b, training plan TP=4 PP=4 DP=4 on 64 GPUs (dgx-a100)
# predicted 42,096 tokens/s
# flags of Megatron-LM core_v0.14.0 (NVIDIA/Megatron-LM commit 23e00ed0963c)
# Megatron derives DP from the world size: launch exactly 64 ranks; 'shardwise export --to torchrun'
#   writes per-node torchrun lines that put every rank on the device the plan names
# add your data, tokenizer, optimizer and checkpoint arguments, and the architecture details the
#   shardwise model spec does not record (normalization, biases, RoPE base)
# MEGATRON_ARGS below is valid only with CUDA_DEVICE_MAX_CONNECTIONS=1 exported: Megatron's
#   validate_args asserts it with tensor parallelism
export CUDA_DEVICE_MAX_CONNECTIONS=1
MEGATRON_ARGS=(
    # parallelism: TP=4 PP=4 DP=4 = 64 ranks; layers 12/12/12/12 in interleaved chunks of 6
    --tensor-model-parallel-size 4
    --pipeline-model-parallel-size 4
    --num-layers-per-virtual-pipeline-stage 6
    --sequence-parallel
    # batch: 512 sequences = 4 replicas x micro-batch 1 x 128 micro-batches
    --micro-batch-size 1
    --global-batch-size 512
    # memory: ZeRO-1, recompute selective
    --use-distributed-optimizer
    --overlap-grad-reduce
    --recompute-granularity selective
    # model: gpt-39b
    --num-layers 48
    --hidden-size 8192
    --ffn-hidden-size 32768
    --num-attention-heads 64
    --position-embedding-type learned_absolute
    --seq-length 2048
    --max-position-embeddings 2048
    # precision: bf16
    --bf16
)
# usage: torchrun ... pretrain_gpt.py "${MEGATRON_ARGS[@]}" --data-path ...
