# shardwise export --to torchrun: gpt-7.5b, training plan TP=1 PP=5 DP=16 on 80 GPUs (h100, a100,
#   l40s)
# solver status OPTIMAL, predicted 343,910 tokens/s
# 80 ranks on 10 nodes; rank order tp-cp-ep-dp-pp (Megatron's default): TP rank fastest
# Run each node's line on that node (node names are the plan's: replace them with your hostnames,
#   here and in the hostfile).  Every rank lands on the GPU the plan names.
# Add your data, tokenizer, optimizer and checkpoint arguments to MEGATRON_ARGS.
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

# node 0: h100-0, ranks 0-7 (stage 0, replicas 0-7, pool h100)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 10 --node-rank 0 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 1: h100-1, ranks 8-15 (stage 0, replicas 8-15, pool h100)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 10 --node-rank 1 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 2: a100-0, ranks 16-23 (stage 1, replicas 0-7, pool a100)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 10 --node-rank 2 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 3: a100-1, ranks 24-31 (stage 1, replicas 8-15, pool a100)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 10 --node-rank 3 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 4: a100-2, ranks 32-39 (stage 2, replicas 0-7, pool a100)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 10 --node-rank 4 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 5: a100-3, ranks 40-47 (stage 2, replicas 8-15, pool a100)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 10 --node-rank 5 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 6: l40s-0, ranks 48-55 (stage 3, replicas 0-7, pool l40s)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 10 --node-rank 6 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 7: l40s-1, ranks 56-63 (stage 3, replicas 8-15, pool l40s)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 10 --node-rank 7 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 8: l40s-2, ranks 64-71 (stage 4, replicas 0-7, pool l40s)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 10 --node-rank 8 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 9: l40s-3, ranks 72-79 (stage 4, replicas 8-15, pool l40s)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 10 --node-rank 9 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"
