# shardwise export --to torchrun: tiny-gpt, training plan TP=1 PP=2 DP=2 on 4 GPUs (h100, l40s)
# predicted 4,839,931 tokens/s
# 4 ranks on 2 nodes; rank order tp-cp-ep-dp-pp (Megatron's default): TP rank fastest
# Run each node's line on that node (node names are the plan's: replace them with your hostnames,
#   here and in the hostfile).  Every rank lands on the GPU the plan names.
# Add your data, tokenizer, optimizer and checkpoint arguments to MEGATRON_ARGS.
MEGATRON_ARGS=(
    # parallelism: TP=1 PP=2 DP=2 = 4 ranks; layers 2/2; stages on h100/l40s
    --tensor-model-parallel-size 1
    --pipeline-model-parallel-size 2
    # batch: 16 sequences = 2 replicas x micro-batch 2 x 4 micro-batches
    --micro-batch-size 2
    --global-batch-size 16
    # memory: ZeRO-1, recompute none
    --use-distributed-optimizer
    --overlap-grad-reduce
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

# node 0: h100-0, ranks 0-1 (stage 0, replicas 0-1, pool h100)
CUDA_VISIBLE_DEVICES=0,1 torchrun \
    --nnodes 2 --node-rank 0 --nproc-per-node 2 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 1: l40s-0, ranks 2-3 (stage 1, replicas 0-1, pool l40s)
CUDA_VISIBLE_DEVICES=0,1 torchrun \
    --nnodes 2 --node-rank 1 --nproc-per-node 2 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"
