# guiagent's trainer image: vLLM's OpenAI image (CUDA, PyTorch and the same vLLM as the policy server,
# which the nccl weight-sync backend needs on both ends) + `pip install .[gpu]` (DeepSpeed). `guiagent`
# runs as the unprivileged user guiagent: the entrypoint starts as root only to make the mounted volumes
# writable for it (emulators/scripts/trainer-entrypoint.sh), then drops privileges for good.
#
# Build context: the repository root (see .dockerignore).
#   docker build -f emulators/trainer.Dockerfile --build-arg VLLM_IMAGE=vllm/vllm-openai:v0.32.0 \
#       -t guiagent/trainer .
# DeepSpeed's ops are not compiled at install (DS_BUILD_OPS=0); those it needs are JIT-built on first
# use into TORCH_EXTENSIONS_DIR (a volume in docker-compose.yml).
ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0
FROM ${VLLM_IMAGE}
ARG GUIAGENT_UID=1300
ARG GUIAGENT_GID=1301
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    DS_BUILD_OPS=0 \
    PYTHONUNBUFFERED=1

USER root
RUN groupadd --gid "${GUIAGENT_GID}" guiagent \
 && useradd --uid "${GUIAGENT_UID}" --gid "${GUIAGENT_GID}" --create-home --shell /usr/sbin/nologin guiagent \
 && install -d -o guiagent -g guiagent -m 0775 /workspace /workspace/runs /checkpoints /data /data/trajectories \
      /home/guiagent/.cache /home/guiagent/.cache/torch_extensions

WORKDIR /opt/guiagent/src
COPY pyproject.toml README.md ./
# The base image's torch and vLLM satisfy guiagent's pins, so pip keeps them (no second CUDA stack).
RUN mkdir guiagent && touch guiagent/__init__.py \
 && python3 -m pip install ".[gpu]" \
 && rm -rf guiagent build *.egg-info
COPY guiagent ./guiagent
RUN python3 -m pip install --no-deps --force-reinstall . && rm -rf build *.egg-info

COPY emulators/scripts/trainer-entrypoint.sh /usr/local/bin/guiagent-trainer-entrypoint
RUN chmod 0755 /usr/local/bin/guiagent-trainer-entrypoint

WORKDIR /workspace
ENV HF_HOME=/home/guiagent/.cache/huggingface \
    TORCH_EXTENSIONS_DIR=/home/guiagent/.cache/torch_extensions
ENTRYPOINT ["/usr/local/bin/guiagent-trainer-entrypoint"]
CMD ["--help"]
