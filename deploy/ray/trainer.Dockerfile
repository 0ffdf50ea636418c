# The trainer's image: rlmig with the train and distributed extras on Ray's own image, for the head and
# the workers of deploy/ray/rayjob-train.yaml (every Ray node must run the same rlmig and Ray).
#   docker build -f deploy/ray/trainer.Dockerfile -t registry.example.com/rlmig/trainer:0.1.0 .
# Build from the repository root. The base is pinned to the Ray release requirements/ci.txt pins (CPU
# build, Python 3.11); torch is the CPU build the README installs, the rest the versions CI tests.
FROM rayproject/ray:2.60.0-py311-cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /tmp/rlmig-src
COPY --chown=ray:users pyproject.toml README.md LICENSE ./
COPY --chown=ray:users requirements ./requirements
COPY --chown=ray:users rlmig ./rlmig
COPY --chown=ray:users envs ./envs
COPY --chown=ray:users agents ./agents
COPY --chown=ray:users eval ./eval
COPY --chown=ray:users checkpoints ./checkpoints
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install -c requirements/ci.txt ".[train,distributed]" \
    && mkdir -p /home/ray/rlmig/eval \
    && cp -r agents/configs /home/ray/rlmig/configs \
    && cp -r eval/scenarios /home/ray/rlmig/eval/scenarios \
    && rm -rf /tmp/rlmig-src \
    && rlmig --help > /dev/null

# the configs name their evaluation scenarios as eval/scenarios/*.yaml: relative to this folder
WORKDIR /home/ray/rlmig
