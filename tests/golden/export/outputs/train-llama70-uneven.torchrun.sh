# shardwise export --to torchrun: llama3-70b, training plan TP=8 PP=2 DP=2 on 32 GPUs (h100)
# predicted 17,448 tokens/s
# 32 ranks on 4 nodes; rank order tp-cp-ep-dp-pp (Megatron's default): TP rank fastest
# Run each node's line on that node (node names are the plan's: replace them with your hostnames,
#   here and in the hostfile).  Every rank lands on the GPU the plan names.
# Add your data, tokenizer, optimizer and checkpoint arguments to MEGATRON_ARGS.
# MEGATRON_ARGS below is valid only with CUDA_DEVICE_MAX_CONNECTIONS=1 exported: Megatron's
#   validate_args asserts it with tensor parallelism
export CUDA_DEVICE_MAX_CONNECTIONS=1
MEGATRON_ARGS=(
    # parallelism: TP=8 PP=2 DP=2 = 32 ranks; layers 39/41
    --tensor-model-parallel-size 8
    --pipeline-model-parallel-size 2
    --decoder-first-pipeline-num-layers 39
    --sequence-parallel
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
    # precision: bf16
    --bf16
)

# node 0: h100-0, ranks 0-7 (stage 0, replica 0)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 4 --node-rank 0 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 1: h100-1, ranks 8-15 (stage 0, replica 1)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 4 --node-rank 1 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 2: h100-2, ranks 16-23 (stage 1, replica 0)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 4 --node-rank 2 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"

# node 3: h100-3, ranks 24-31 (stage 1, replica 1)
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 torchrun \
    --nnodes 4 --node-rank 3 --nproc-per-node 8 --master-addr h100-0 --master-port 29500 \
    pretrain_gpt.py "${MEGATRON_ARGS[@]}"
