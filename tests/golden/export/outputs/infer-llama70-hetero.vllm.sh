# shardwise export --to vllm: llama3-70b, inference plan TP=4 PP=1 DP=8 on 32 GPUs (a100); TP=8 PP=1
#   DP=2 on 16 GPUs (h100); TP=8 PP=1 DP=4 on 32 GPUs (l40s)
# solver status OPTIMAL, predicted 5,409 tokens/s
# node names are the plan's (<pool>-<index>): replace them with your hostnames
# 3 replica groups differ in GPU type, TP/PP or batch, so each is its own vLLM launch with its own
#   endpoint(s); balance requests across all endpoints
MODEL="${MODEL:?set MODEL to the Hugging Face id or local path of llama3-70b}"

# group 0: 8 replicas x TP=4 PP=1 on a100 (A100-SXM4-80GB), batch 8 per replica
# vLLM data parallelism over 4 nodes: one endpoint a100-0:8000; start every node's line
# on a100-0: DP ranks 0-1
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 4 --pipeline-parallel-size 1 --max-num-seqs 8 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --data-parallel-size 8 \
    --data-parallel-size-local 2 --data-parallel-address a100-0 --data-parallel-rpc-port 13345 \
    --port 8000
# on a100-1: DP ranks 2-3
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 4 --pipeline-parallel-size 1 --max-num-seqs 8 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --headless --data-parallel-size 8 \
    --data-parallel-size-local 2 --data-parallel-start-rank 2 --data-parallel-address a100-0 \
    --data-parallel-rpc-port 13345
# on a100-2: DP ranks 4-5
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 4 --pipeline-parallel-size 1 --max-num-seqs 8 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --headless --data-parallel-size 8 \
    --data-parallel-size-local 2 --data-parallel-start-rank 4 --data-parallel-address a100-0 \
    --data-parallel-rpc-port 13345
# on a100-3: DP ranks 6-7
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 4 --pipeline-parallel-size 1 --max-num-seqs 8 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --headless --data-parallel-size 8 \
    --data-parallel-size-local 2 --data-parallel-start-rank 6 --data-parallel-address a100-0 \
    --data-parallel-rpc-port 13345

# group 1: 2 replicas x TP=8 PP=1 on h100 (H100-SXM5-80GB), batch 32 per replica
# vLLM data parallelism over 2 nodes: one endpoint h100-0:8000; start every node's line
# on h100-0: DP rank 0
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 1 --max-num-seqs 32 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --data-parallel-size 2 \
    --data-parallel-size-local 1 --data-parallel-address h100-0 --data-parallel-rpc-port 13345 \
    --port 8000
# on h100-1: DP rank 1
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 1 --max-num-seqs 32 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --headless --data-parallel-size 2 \
    --data-parallel-size-local 1 --data-parallel-start-rank 1 --data-parallel-address h100-0 \
    --data-parallel-rpc-port 13345

# group 2: 4 replicas x TP=8 PP=1 on l40s (L40S), batch 1 per replica
# vLLM data parallelism over 4 nodes: one endpoint l40s-0:8000; start every node's line
# on l40s-0: DP rank 0
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 1 --max-num-seqs 1 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --data-parallel-size 4 \
    --data-parallel-size-local 1 --data-parallel-address l40s-0 --data-parallel-rpc-port 13345 \
    --port 8000
# on l40s-1: DP rank 1
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 1 --max-num-seqs 1 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --headless --data-parallel-size 4 \
    --data-parallel-size-local 1 --data-parallel-start-rank 1 --data-parallel-address l40s-0 \
    --data-parallel-rpc-port 13345
# on l40s-2: DP rank 2
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 1 --max-num-seqs 1 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --headless --data-parallel-size 4 \
    --data-parallel-size-local 1 --data-parallel-start-rank 2 --data-parallel-address l40s-0 \
    --data-parallel-rpc-port 13345
# on l40s-3: DP rank 3
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 1 --max-num-seqs 1 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --headless --data-parallel-size 4 \
    --data-parallel-size-local 1 --data-parallel-start-rank 3 --data-parallel-address l40s-0 \
    --data-parallel-rpc-port 13345
