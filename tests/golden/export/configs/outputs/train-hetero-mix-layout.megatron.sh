# shardwise export --to megatron: gpt-7.5b, training plan TP=1 PP=5 DP=16 on 80 GPUs (h100, a100,
#   l40s)
# solver status OPTIMAL, predicted 343,910 tokens/s
# flags of Megatron-LM core_v0.14.0 (NVIDIA/Megatron-LM commit 23e00ed0963c);
#   --pipeline-model-parallel-layout needs core_v0.13.0 or later
# Megatron derives DP from the world size: launch exactly 80 ranks; 'shardwise export --to torchrun'
#   writes per-node torchrun lines that put every rank on the device the plan names
# add your data, tokenizer, optimizer and checkpoint arguments, and the architecture details the
#   shardwise model spec does not record (normalization, biases, RoPE base)
MEGATRON_ARGS=(
    # parallelism: TP=1 PP=5 DP=16 = 80 ranks; layers 16/6/5/5/4; stages on h100/a100/a100/l40s/l40s
    --tensor-model-parallel-size 1
    --pipeline-model-parallel-size 5
    --pipeline-model-parallel-layout "Et*16|t*6|t*5|t*5|t*4L"
    # batch: 512 sequences = 16 replicas x micro-batch 1 x 32 micro-batches
    --micro-batch-size 1
    --global-batch-size 512
    # memory: ZeRO-1, recompute none
    --use-distributed-optimizer
    --overlap-grad-reduce
    # model: gpt-7.5b
    --num-layers 36
    --hidden-size 4096
    --ffn-hidden-size 16384
    --num-attention-heads 32
    --position-embedding-type learned_absolute
    --seq-length 2048
    --max-position-embeddings 2048
    # precision: bf16
    --bf16
)
# usage: torchrun ... pretrain_gpt.py "${MEGATRON_ARGS[@]}" --data-path ...
