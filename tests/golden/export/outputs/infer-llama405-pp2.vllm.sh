# shardwise export --to vllm: llama3.1-405b, inference plan TP=8 PP=2 DP=2 on 32 GPUs (h100)
# solver status OPTIMAL, predicted 283 tokens/s
# node names are the plan's (<pool>-<index>): replace them with your hostnames
# vLLM: replicas that span nodes run on Ray; Ray, not this file, decides which node runs which stage
#   (TP groups stay inside a node)
MODEL="${MODEL:?set MODEL to the Hugging Face id or local path of llama3.1-405b}"

# group 0: 2 replicas x TP=8 PP=2 on h100 (H100-SXM5-80GB), layers 63/63, batch 8 per replica
# 2 replicas, each its own endpoint: route requests across them (any HTTP load balancer)
# replica 0 on h100-0, h100-2: endpoint h100-0:8000
# vLLM runs a replica that spans nodes on a Ray cluster; Ray picks which of these nodes runs which
#   stage
# on h100-0:
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 ray start --head --port 6379
# on h100-2:
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 ray start --address h100-0:6379
# then on h100-0:
vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 2 --max-num-seqs 8 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --distributed-executor-backend ray --port 8000
# replica 1 on h100-1, h100-3: endpoint h100-1:8000
# vLLM runs a replica that spans nodes on a Ray cluster; Ray picks which of these nodes runs which
#   stage
# on h100-1:
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 ray start --head --port 6379
# on h100-3:
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 ray start --address h100-1:6379
# then on h100-1:
vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 2 --max-num-seqs 8 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --distributed-executor-backend ray --port 8000
