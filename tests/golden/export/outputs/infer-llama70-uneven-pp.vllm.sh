# shardwise export --to vllm: llama3-70b, inference plan TP=4 PP=2 DP=1 on 8 GPUs (h100)
# predicted 425 tokens/s
# node names are the plan's (<pool>-<index>): replace them with your hostnames
MODEL="${MODEL:?set MODEL to the Hugging Face id or local path of llama3-70b}"

# group 0: 1 replica x TP=4 PP=2 on h100 (H100-SXM5-80GB), layers 39/41, batch 8 per replica
# on h100-0: endpoint h100-0:8000
CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 VLLM_PP_LAYER_PARTITION=39,41 vllm serve "$MODEL" \
    --tensor-parallel-size 4 --pipeline-parallel-size 2 --max-num-seqs 8 --max-model-len 1280 \
    --gpu-memory-utilization 0.9 --dtype bfloat16 --port 8000
