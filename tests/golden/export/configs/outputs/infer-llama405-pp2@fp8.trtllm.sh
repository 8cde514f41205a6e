# shardwise export --to trtllm: llama3.1-405b, inference plan TP=8 PP=2 DP=2 on 32 GPUs (h100)
# solver status OPTIMAL, predicted 283 tokens/s
# node names are the plan's (<pool>-<index>): replace them with your hostnames
# weights fp8: serve an FP8 checkpoint from NVIDIA ModelOpt; TensorRT-LLM reads its scales from the
#   checkpoint
MODEL="${MODEL:?set MODEL to the Hugging Face id or local path of llama3.1-405b}"
# precision: TensorRT-LLM's LLM-API options (trtllm-serve --config); the file must exist on the node
#   that runs trtllm-serve
TRTLLM_CONFIG="${TRTLLM_CONFIG:-trtllm-llm-api.yaml}"
cat > "$TRTLLM_CONFIG" <<'EOF'
quant_config:
  quant_algo: FP8
kv_cache_config:
  dtype: fp8
EOF

# group 0: 2 replicas x TP=8 PP=2 on h100 (H100-SXM5-80GB), layers 63/63, batch 8 per replica
# 2 replicas, each its own endpoint: route requests across them (any HTTP load balancer)
# replica 0 on h100-0, h100-2: endpoint h100-0:8000
# on h100-0 (mpirun starts the ranks on every host):
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 mpirun -np 16 -H h100-0:8,h100-2:8 -x CUDA_VISIBLE_DEVICES trtllm-llmapi-launch trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 2 --max_batch_size 8 --max_seq_len 1280 \
    --config "$TRTLLM_CONFIG" --host 0.0.0.0 --port 8000
# replica 1 on h100-1, h100-3: endpoint h100-1:8000
# on h100-1 (mpirun starts the ranks on every host):
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 mpirun -np 16 -H h100-1:8,h100-3:8 -x CUDA_VISIBLE_DEVICES trtllm-llmapi-launch trtllm-serve "$MODEL" \
    --backend pytorch --tp_size 8 --pp_size 2 --max_batch_size 8 --max_seq_len 1280 \
    --config "$TRTLLM_CONFIG" --host 0.0.0.0 --port 8000
