# shardwise export --to vllm: llama3-70b, inference plan TP=8 PP=1 DP=4 on 32 GPUs (h100)
# solver status OPTIMAL, predicted 6,168 tokens/s
# node names are the plan's (<pool>-<index>): replace them with your hostnames
# weights int4: serve an AWQ 4-bit (W4A16, group 128) checkpoint; vLLM reads its scales from the
#   checkpoint
MODEL="${MODEL:?set MODEL to the Hugging Face id or local path of llama3-70b}"

# group 0: 4 replicas x TP=8 PP=1 on h100 (H100-SXM5-80GB), batch 32 per replica
# vLLM data parallelism over 4 nodes: one endpoint h100-0:8000; start every node's line
# on h100-0: DP rank 0
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 1 --max-num-seqs 32 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --quantization awq_marlin --data-parallel-size 4 \
    --data-parallel-size-local 1 --data-parallel-address h100-0 --data-parallel-rpc-port 13345 \
    --port 8000
# on h100-1: DP rank 1
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 1 --max-num-seqs 32 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --quantization awq_marlin --headless \
    --data-parallel-size 4 --data-parallel-size-local 1 --data-parallel-start-rank 1 \
    --data-parallel-address h100-0 --data-parallel-rpc-port 13345
# on h100-2: DP rank 2
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 1 --max-num-seqs 32 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --quantization awq_marlin --headless \
    --data-parallel-size 4 --data-parallel-size-local 1 --data-parallel-start-rank 2 \
    --data-parallel-address h100-0 --data-parallel-rpc-port 13345
# on h100-3: DP rank 3
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 vllm serve "$MODEL" \
    --tensor-parallel-size 8 --pipeline-parallel-size 1 --max-num-seqs 32 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --quantization awq_marlin --headless \
    --data-parallel-size 4 --data-parallel-size-local 1 --data-parallel-start-rank 3 \
    --data-parallel-address h100-0 --data-parallel-rpc-port 13345
