# guiagent's osworld-worker image: the OSWorld VM image (happysixd/osworld-docker: QEMU/KVM booting the
# qcow2 mounted read-only at /System.qcow2) with guiagent's farm worker added beside the VM, in the same
# container (why: docker-compose.yml, service `osworld`).
#
# Build context: the repository root (see .dockerignore).
#   docker build -f emulators/osworld.Dockerfile -t guiagent/osworld-worker .
#
# The base image is closed source (Debian, QEMU, entry script /run/entry.sh under tini). guiagent goes
# into its own venv (/opt/guiagent); the worker runs as the unprivileged user guiagent (1300:1301, as in
# the other worker images) while QEMU keeps running as root, which its tap networking needs.
ARG OSWORLD_BASE_IMAGE=happysixd/osworld-docker:latest
FROM ${OSWORLD_BASE_IMAGE}
ARG GUIAGENT_UID=1300
ARG GUIAGENT_GID=1301
# `osworld`: the extra of the OSWorld parts (the test VM: fastapi, uvicorn, python-multipart); until
# pyproject has it, pip only warns that guiagent does not provide it.
ARG GUIAGENT_EXTRAS=android,osworld
ARG EXTRA_PIP_PACKAGES=s3fs
# OSWorld's own package (PyPI desktop-env), whose evaluators judge the tasks. It pins old torch, transformers
# and Pillow and imports torch through its OCR metrics, so it gets a venv of its own (/opt/osworld, with
# guiagent beside it, no deps) and the worker runs the judge there (GUIAGENT_OSWORLD_PYTHON;
# guiagent.envs.osworld.evaluation), never importing it. Pinned: a benchmark's checker must not drift.
ARG OSWORLD_EVAL_PACKAGES="desktop-env==1.0.2 httpx"
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/guiagent \
 && groupadd --gid "${GUIAGENT_GID}" guiagent \
 && useradd --uid "${GUIAGENT_UID}" --gid "${GUIAGENT_GID}" --create-home --shell /usr/sbin/nologin guiagent \
 && install -d -o guiagent -g guiagent -m 0775 /data /data/trajectories

WORKDIR /opt/guiagent/src
COPY pyproject.toml README.md ./
RUN mkdir guiagent && touch guiagent/__init__.py \
 && /opt/guiagent/bin/pip install ".[${GUIAGENT_EXTRAS}]" ${EXTRA_PIP_PACKAGES} \
 && rm -rf guiagent build *.egg-info
RUN python3 -m venv /opt/osworld && /opt/osworld/bin/pip install ${OSWORLD_EVAL_PACKAGES}
COPY guiagent ./guiagent
RUN /opt/guiagent/bin/pip install --no-deps --force-reinstall . \
 && /opt/osworld/bin/pip install --no-deps --force-reinstall . && rm -rf build *.egg-info

COPY emulators/scripts/guiagent-worker emulators/scripts/guiagent-healthcheck /usr/local/bin/
COPY emulators/scripts/osworld-entrypoint.sh /usr/local/bin/guiagent-osworld-entrypoint
RUN chmod 0755 /usr/local/bin/guiagent-worker /usr/local/bin/guiagent-healthcheck \
      /usr/local/bin/guiagent-osworld-entrypoint

ENV GUIAGENT_PYTHON=/opt/guiagent/bin/python \
    GUIAGENT_OSWORLD_PYTHON=/opt/osworld/bin/python \
    GUIAGENT_UID=${GUIAGENT_UID} \
    GUIAGENT_GID=${GUIAGENT_GID} \
    GUIAGENT_STORE_URL=/data/trajectories \
    PYTHONUNBUFFERED=1
WORKDIR /
# Upstream runs ["/usr/bin/tini", "-s", "/run/entry.sh"]; ours starts that script and the worker.
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/usr/local/bin/guiagent-osworld-entrypoint"]
CMD []
