# shardwise export --to trtllm: llama3-70b, inference plan TP=4 PP=1 DP=8 on 32 GPUs (a100); TP=8
#   PP=1 DP=2 on 16 GPUs (h100); TP=8 PP=1 DP=4 on 32 GPUs (l40s)
# solver status OPTIMAL, predicted 5,409 tokens/s
# node names are the plan's (<pool>-<index>): replace them with your hostnames
# 3 replica groups differ in GPU type, TP/PP or batch, so each is its own TensorRT-LLM launch with
#   its own endpoint(s); balance requests across all endpoints
# TensorRT-LLM: every replica is its own trtllm-serve endpoint; put a load balancer in front of a
#   group's endpoints
MODEL="${MODEL:?set MODEL to the Hugging Face id or local path of llama3-70b}"

# group 0: 8 replicas x TP=4 PP=1 on a100 (A100-SXM4-80GB), batch 8 per replica
# trtllm-serve has no data parallelism for dense models: 8 endpoints, one per replica; route
#   requests across them (any HTTP load balancer)
# on a100-0: replica 0, endpoint a100-0:8000
CUDA_VISIBLE_DEVICES=0,1,2,3 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 4 --pp_size 1 --max_batch_size 8 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8000
# on a100-0: replica 1, endpoint a100-0:8001
CUDA_VISIBLE_DEVICES=4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 4 --pp_size 1 --max_batch_size 8 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8001
# on a100-1: replica 2, endpoint a100-1:8000
CUDA_VISIBLE_DEVICES=0,1,2,3 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 4 --pp_size 1 --max_batch_size 8 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8000
# on a100-1: replica 3, endpoint a100-1:8001
CUDA_VISIBLE_DEVICES=4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 4 --pp_size 1 --max_batch_size 8 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8001
# on a100-2: replica 4, endpoint a100-2:8000
CUDA_VISIBLE_DEVICES=0,1,2,3 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 4 --pp_size 1 --max_batch_size 8 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8000
# on a100-2: replica 5, endpoint a100-2:8001
CUDA_VISIBLE_DEVICES=4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 4 --pp_size 1 --max_batch_size 8 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8001
# on a100-3: replica 6, endpoint a100-3:8000
CUDA_VISIBLE_DEVICES=0,1,2,3 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 4 --pp_size 1 --max_batch_size 8 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8000
# on a100-3: replica 7, endpoint a100-3:8001
CUDA_VISIBLE_DEVICES=4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 4 --pp_size 1 --max_batch_size 8 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8001

# group 1: 2 replicas x TP=8 PP=1 on h100 (H100-SXM5-80GB), batch 32 per replica
# trtllm-serve has no data parallelism for dense models: 2 endpoints, one per replica; route
#   requests across them (any HTTP load balancer)
# on h100-0: replica 0, endpoint h100-0:8000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 1 --max_batch_size 32 --max_seq_len 1280 \
    --host 0.0.0.0 --port 8000
# on h100-1: replica 1, endpoint h100-1:8000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 1 --max_batch_size 32 --max_seq_len 1280 \
    --host 0.0.0.0 --port 8000

# group 2: 4 replicas x TP=8 PP=1 on l40s (L40S), batch 1 per replica
# trtllm-serve has no data parallelism for dense models: 4 endpoints, one per replica; route
#   requests across them (any HTTP load balancer)
# on l40s-0: replica 0, endpoint l40s-0:8000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 1 --max_batch_size 1 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8000
# on l40s-1: replica 1, endpoint l40s-1:8000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 1 --max_batch_size 1 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8000
# on l40s-2: replica 2, endpoint l40s-2:8000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 1 --max_batch_size 1 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8000
# on l40s-3: replica 3, endpoint l40s-3:8000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 1 --max_batch_size 1 --max_seq_len 1280 --host 0.0.0.0 \
    --port 8000
