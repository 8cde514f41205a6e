# shardwise export --to sglang: llama3-70b, inference plan TP=4 PP=1 DP=8 on 32 GPUs (a100); TP=8
#   PP=1 DP=2 on 16 GPUs (h100); TP=8 PP=1 DP=4 on 32 GPUs (l40s)
# solver status OPTIMAL, predicted 5,409 tokens/s
# node names are the plan's (<pool>-<index>): replace them with your hostnames
# 3 replica groups differ in GPU type, TP/PP or batch, so each is its own SGLang launch with its own
#   endpoint(s); balance requests across all endpoints
MODEL="${MODEL:?set MODEL to the Hugging Face id or local path of llama3-70b}"

# group 0: 8 replicas x TP=4 PP=1 on a100 (A100-SXM4-80GB), batch 8 per replica
# 4 endpoints, one per node: route requests across them (sglang_router or any HTTP load balancer)
# on a100-0: endpoint a100-0:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 4 --pp-size 1 --max-running-requests 8 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --dp-size 2 --host 0.0.0.0 --port 30000
# on a100-1: endpoint a100-1:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 4 --pp-size 1 --max-running-requests 8 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --dp-size 2 --host 0.0.0.0 --port 30000
# on a100-2: endpoint a100-2:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 4 --pp-size 1 --max-running-requests 8 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --dp-size 2 --host 0.0.0.0 --port 30000
# on a100-3: endpoint a100-3:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 4 --pp-size 1 --max-running-requests 8 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --dp-size 2 --host 0.0.0.0 --port 30000

# group 1: 2 replicas x TP=8 PP=1 on h100 (H100-SXM5-80GB), batch 32 per replica
# 2 endpoints, one per node: route requests across them (sglang_router or any HTTP load balancer)
# on h100-0: endpoint h100-0:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 1 --max-running-requests 32 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --host 0.0.0.0 --port 30000
# on h100-1: endpoint h100-1:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 1 --max-running-requests 32 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --host 0.0.0.0 --port 30000

# group 2: 4 replicas x TP=8 PP=1 on l40s (L40S), batch 1 per replica
# 4 endpoints, one per node: route requests across them (sglang_router or any HTTP load balancer)
# on l40s-0: endpoint l40s-0:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 1 --max-running-requests 1 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --host 0.0.0.0 --port 30000
# on l40s-1: endpoint l40s-1:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 1 --max-running-requests 1 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --host 0.0.0.0 --port 30000
# on l40s-2: endpoint l40s-2:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 1 --max-running-requests 1 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --host 0.0.0.0 --port 30000
# on l40s-3: endpoint l40s-3:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 1 --max-running-requests 1 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --host 0.0.0.0 --port 30000
