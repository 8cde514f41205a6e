# shardwise export --to trtllm: llama3-70b, inference plan TP=8 PP=1 DP=4 on 32 GPUs (h100)
# solver status OPTIMAL, predicted 6,168 tokens/s
# node names are the plan's (<pool>-<index>): replace them with your hostnames
# weights int4: serve an AWQ 4-bit (W4A16, group 128) checkpoint; TensorRT-LLM reads its scales from
#   the checkpoint
# TensorRT-LLM: every replica is its own trtllm-serve endpoint; put a load balancer in front of a
#   group's endpoints
MODEL="${MODEL:?set MODEL to the Hugging Face id or local path of llama3-70b}"
# precision: TensorRT-LLM's LLM-API options (trtllm-serve --config); the file must exist on the node
#   that runs trtllm-serve
TRTLLM_CONFIG="${TRTLLM_CONFIG:-trtllm-llm-api.yaml}"
cat > "$TRTLLM_CONFIG" <<'EOF'
quant_config:
  quant_algo: W4A16_AWQ
EOF

# group 0: 4 replicas x TP=8 PP=1 on h100 (H100-SXM5-80GB), batch 32 per replica
# trtllm-serve has no data parallelism for dense models: 4 endpoints, one per replica; route
#   requests across them (any HTTP load balancer)
# on h100-0: replica 0, endpoint h100-0:8000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 1 --max_batch_size 32 --max_seq_len 1280 \
    --config "$TRTLLM_CONFIG" --host 0.0.0.0 --port 8000
# on h100-1: replica 1, endpoint h100-1:8000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 1 --max_batch_size 32 --max_seq_len 1280 \
    --config "$TRTLLM_CONFIG" --host 0.0.0.0 --port 8000
# on h100-2: replica 2, endpoint h100-2:8000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 1 --max_batch_size 32 --max_seq_len 1280 \
    --config "$TRTLLM_CONFIG" --host 0.0.0.0 --port 8000
# on h100-3: replica 3, endpoint h100-3:8000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 1 --max_batch_size 32 --max_seq_len 1280 \
    --config "$TRTLLM_CONFIG" --host 0.0.0.0 --port 8000
