# shardwise export --to sglang: llama3-70b, inference plan TP=8 PP=1 DP=4 on 32 GPUs (h100)
# solver status OPTIMAL, predicted 6,168 tokens/s
# node names are the plan's (<pool>-<index>): replace them with your hostnames
# weights int4: serve an AWQ 4-bit (W4A16, group 128) checkpoint; SGLang reads its scales from the
#   checkpoint
MODEL="${MODEL:?set MODEL to the Hugging Face id or local path of llama3-70b}"

# group 0: 4 replicas x TP=8 PP=1 on h100 (H100-SXM5-80GB), batch 32 per replica
# 4 endpoints, one per node: route requests across them (sglang_router or any HTTP load balancer)
# on h100-0: endpoint h100-0:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 1 --max-running-requests 32 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --quantization awq_marlin --host 0.0.0.0 \
    --port 30000
# on h100-1: endpoint h100-1:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 1 --max-running-requests 32 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --quantization awq_marlin --host 0.0.0.0 \
    --port 30000
# on h100-2: endpoint h100-2:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 1 --max-running-requests 32 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --quantization awq_marlin --host 0.0.0.0 \
    --port 30000
# on h100-3: endpoint h100-3:30000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 python -m sglang.launch_server --model-path "$MODEL" \
    --tp-size 8 --pp-size 1 --max-running-requests 32 --context-length 1280 \
    --mem-fraction-static 0.9 --dtype bfloat16 --quantization awq_marlin --host 0.0.0.0 \
    --port 30000
