# A trained checkpoint as an image of its own, copied into the agent's pod by an init container
# (deploy/k8s/daemonset.yaml): a new policy is a new tag, the agent image stays as it is.
#   docker build -f deploy/checkpoint.Dockerfile --build-arg CHECKPOINT=runs/a100-80gb/checkpoint \
#       -t registry.example.com/rlmig/checkpoint-a100-80gb:2025-01-01 .
FROM busybox:1.36
ARG CHECKPOINT=checkpoints/a100-80gb
COPY ${CHECKPOINT}/card.json ${CHECKPOINT}/policy.npz /checkpoint/
