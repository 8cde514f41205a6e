# shardwise export --to sglang: llama3.1-405b, inference plan TP=8 PP=2 DP=2 on 32 GPUs (h100)
# solver status OPTIMAL, predicted 283 tokens/s
# node names are the plan's (<pool>-<index>): replace them with your hostnames
MODEL="${MODEL:?set MODEL to the Hugging Face id or local path of llama3.1-405b}"

# group 0: 2 replicas x TP=8 PP=2 on h100 (H100-SXM5-80GB), layers 63/63, batch 8 per replica
# 2 replicas, each its own endpoint: route requests across them (any HTTP load balancer)
# replica 0 on h100-0, h100-2: endpoint h100-0:30000
# on h100-0:
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 2 --max-running-requests 8 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --nnodes 2 --node-rank 0 \
    --dist-init-addr h100-0:50000 --host 0.0.0.0 --port 30000
# on h100-2:
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 2 --max-running-requests 8 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --nnodes 2 --node-rank 1 \
    --dist-init-addr h100-0:50000
# replica 1 on h100-1, h100-3: endpoint h100-1:30000
# on h100-1:
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 2 --max-running-requests 8 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --nnodes 2 --node-rank 0 \
    --dist-init-addr h100-1:50000 --host 0.0.0.0 --port 30000
# on h100-3:
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 2 --max-running-requests 8 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --nnodes 2 --node-rank 1 \
    --dist-init-addr h100-1:50000
