# shardwise export --to torchrun: gpt-39b, training plan TP=4 PP=2 DP=8 on 64 GPUs (dgx-a100)
# predicted 43,780 tokens/s
# 64 ranks on 8 nodes; rank order tp-cp-ep-dp-pp (Megatron's default): TP rank fastest
# Run each node's line on that node (node names are the plan's: replace them with your hostnames,
#   here and in the hostfile).  Every rank lands on the GPU the plan names.
# Add your data, tokenizer, optimizer and checkpoint arguments to MEGATRON_ARGS.
# MEGATRON_ARGS below is valid only with CUDA_DEVICE_MAX_CONNECTIONS=1 exported: Megatron's
#   validate_args asserts it with tensor parallelism
export CUDA_DEVICE_MAX_CONNECTIONS=1
MEGATRON_ARGS=(
    # parallelism: TP=4 PP=2 DP=8 = 64 ranks; layers 24/24
    --tensor-model-parallel-size 4
    --pipeline-model-parallel-size 2
    --sequence-parallel
    # batch: 512 sequences = 8 replicas x micro-batch 1 x 64 micro-batches
    --micro-batch-size 1
    --global-batch-size 512
    # memory: ZeRO-1, recompute none
    --use-distributed-optimizer
    --overlap-grad-reduce
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

# node 0: dgx-a100-0, ranks 0-7 (stage 0, replicas 0-1)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 8 --node-rank 0 --nproc-per-node 8 --master-addr dgx-a100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 1: dgx-a100-1, ranks 8-15 (stage 0, replicas 2-3)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 8 --node-rank 1 --nproc-per-node 8 --master-addr dgx-a100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 2: dgx-a100-2, ranks 16-23 (stage 0, replicas 4-5)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 8 --node-rank 2 --nproc-per-node 8 --master-addr dgx-a100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 3: dgx-a100-3, ranks 24-31 (stage 0, replicas 6-7)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 8 --node-rank 3 --nproc-per-node 8 --master-addr dgx-a100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 4: dgx-a100-4, ranks 32-39 (stage 1, replicas 0-1)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 8 --node-rank 4 --nproc-per-node 8 --master-addr dgx-a100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 5: dgx-a100-5, ranks 40-47 (stage 1, replicas 2-3)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 8 --node-rank 5 --nproc-per-node 8 --master-addr dgx-a100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 6: dgx-a100-6, ranks 48-55 (stage 1, replicas 4-5)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 8 --node-rank 6 --nproc-per-node 8 --master-addr dgx-a100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 7: dgx-a100-7, ranks 56-63 (stage 1, replicas 6-7)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 8 --node-rank 7 --nproc-per-node 8 --master-addr dgx-a100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"
