# shardwise export --to megatron: tiny-gpt, training plan TP=1 PP=1 DP=8 on 8 GPUs (a100)
# solver status OPTIMAL, predicted 15,470,627 tokens/s
# flags of Megatron-LM core_v0.14.0 (NVIDIA/Megatron-LM commit 23e00ed0963c)
# Megatron derives DP from the world size: launch exactly 8 ranks; 'shardwise export --to torchrun'
#   writes per-node torchrun lines that put every rank on the device the plan names
# add your data, tokenizer, optimizer and checkpoint arguments, and the architecture details the
#   shardwise model spec does not record (normalization, biases, RoPE base)
MEGATRON_ARGS=(
    # parallelism: TP=1 PP=1 DP=8 = 8 ranks; layers 4
    --tensor-model-parallel-size 1
    --pipeline-model-parallel-size 1
    # batch: 16 sequences = 8 replicas x micro-batch 2 x 1 micro-batches
    --micro-batch-size 2
    --global-batch-size 16
    # memory: ZeRO-1, recompute full
    --use-distributed-optimizer
    --overlap-grad-reduce
    --recompute-granularity full
    --recompute-method uniform
    --recompute-num-layers 1
    # model: tiny-gpt
    --num-layers 4
    --hidden-size 256
    --ffn-hidden-size 1024
    --num-attention-heads 4
    --position-embedding-type rope
    --seq-length 256
    --max-position-embeddings 256
    # precision: bf16
    --bf16
)
# usage: torchrun ... pretrain_gpt.py "${MEGATRON_ARGS[@]}" --data-path ...
