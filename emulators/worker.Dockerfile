# guiagent's worker image: python:3.11-slim + `pip install .[android]` + Debian's adb, run as the
# unprivileged user guiagent; entrypoint `python -m guiagent.farm.worker` (through guiagent-worker,
# which names the device after the container when no --device-id is given).
#
# Build context: the repository root (see .dockerignore).
#   docker build -f emulators/worker.Dockerfile -t guiagent/worker .               # sim workers
#   docker build -f emulators/worker.Dockerfile --target web -t guiagent/worker-web .   # MiniWoB++
#   docker build -f emulators/worker.Dockerfile --target flower -t guiagent/flower .    # Flower
#
# Build arguments: GUIAGENT_EXTRAS (default android), EXTRA_PIP_PACKAGES (default s3fs, for an s3://
# trajectory store; empty for none),
# PIP_INDEX_URL / PIP_EXTRA_INDEX_URL (a package mirror), GUIAGENT_UID / GUIAGENT_GID (default
# 1300:1301, docker-android's androidusr, so every worker image can write the shared trajectory
# volume). Nothing is downloaded but the base image, Debian packages and Python packages.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS worker
ARG GUIAGENT_UID=1300
ARG GUIAGENT_GID=1301
ARG GUIAGENT_EXTRAS=android
ARG EXTRA_PIP_PACKAGES=s3fs
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends adb ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid "${GUIAGENT_GID}" guiagent \
 && useradd --uid "${GUIAGENT_UID}" --gid "${GUIAGENT_GID}" --create-home --shell /usr/sbin/nologin guiagent \
 && install -d -o guiagent -g guiagent -m 0775 /data /data/trajectories

WORKDIR /opt/guiagent/src
# Dependencies first, from pyproject.toml alone (an empty package stands in for the code), so a code
# change rebuilds one small layer instead of reinstalling torch & co.
COPY pyproject.toml README.md ./
RUN mkdir guiagent && touch guiagent/__init__.py \
 && pip install ".[${GUIAGENT_EXTRAS}]" ${EXTRA_PIP_PACKAGES} \
 && rm -rf guiagent build *.egg-info
COPY guiagent ./guiagent
RUN pip install --no-deps --force-reinstall . && rm -rf build *.egg-info

COPY emulators/scripts/guiagent-worker emulators/scripts/guiagent-healthcheck /usr/local/bin/
RUN chmod 0755 /usr/local/bin/guiagent-worker /usr/local/bin/guiagent-healthcheck

USER guiagent
WORKDIR /home/guiagent
ENV GUIAGENT_STORE_URL=/data/trajectories
ENTRYPOINT ["guiagent-worker"]
CMD ["--kind", "sim"]


# MiniWoB++ in Debian's Chromium (the web device kind).
FROM worker AS web
ARG GUIAGENT_EXTRAS=android
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium chromium-driver fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && cd /opt/guiagent/src && pip install ".[${GUIAGENT_EXTRAS},web]" && rm -rf build *.egg-info
ENV MINIWOB_CHROME_BINARY=/usr/bin/chromium \
    MINIWOB_CHROMEDRIVER=/usr/bin/chromedriver
USER guiagent
CMD ["--kind", "web"]


# Flower, the Celery monitor, configured from GUIAGENT_BROKER_URL like every worker.
FROM worker AS flower
USER root
RUN pip install "flower>=2.0,<3"
USER guiagent
ENTRYPOINT ["celery", "-A", "guiagent.farm.app:app", "flower"]
CMD ["--address=0.0.0.0", "--port=5555"]
