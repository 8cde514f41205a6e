# shardwise export --to torchrun: tiny-gpt, training plan TP=1 PP=1 DP=8 on 8 GPUs (a100)
# solver status OPTIMAL, predicted 15,470,627 tokens/s
# 8 ranks on 2 nodes; rank order tp-cp-ep-dp-pp (Megatron's default): TP rank fastest
# Run each node's line on that node (node names are the plan's: replace them with your hostnames,
#   here and in the hostfile).  Every rank lands on the GPU the plan names.
# Add your data, tokenizer, optimizer and checkpoint arguments to MEGATRON_ARGS.
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

# node 0: a100-0, ranks 0-3 (stage 0, replicas 0-3)
CUDA_VISIBLE_DEVICES=0,1,2,3 torchrun \
    --nnodes 2 --node-rank 0 --nproc-per-node 4 --master-addr a100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 1: a100-1, ranks 4-7 (stage 0, replicas 4-7)
CUDA_VISIBLE_DEVICES=0,1,2,3 torchrun \
    --nnodes 2 --node-rank 1 --nproc-per-node 4 --master-addr a100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"
