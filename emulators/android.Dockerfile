# guiagent's android-worker image: an upstream docker-android emulator image with guiagent's farm worker
# added beside the emulator, in the same container (why: docker-compose.yml, service `android`).
#
# Build context: the repository root (see .dockerignore).
#   docker build -f emulators/android.Dockerfile -t guiagent/android-worker .
#   docker build -f emulators/android.Dockerfile \
#       --build-arg ANDROID_BASE_IMAGE=budtmo/docker-android:emulator_14.0_v3.5.2-p0 -t ... .
#
# The base image (Ubuntu, the Android SDK's adb and emulator, supervisord, user androidusr 1300:1301)
# is used as it is: guiagent goes into its own venv (/opt/guiagent) so it neither touches the system
# Python that docker-android's CLI runs on nor takes the PEP 668-managed site-packages; the worker
# uses the SDK's adb, the same adb server the emulator tooling uses (two adb versions on one port kill
# each other's server). Runs as androidusr, as upstream does.
ARG ANDROID_BASE_IMAGE=budtmo/docker-android:emulator_13.0_v3.5.2-p0
FROM ${ANDROID_BASE_IMAGE}
ARG GUIAGENT_EXTRAS=android
# AndroidWorld's own task code (registry, initialize_task, is_successful, tear_down), installed by pip from its
# repository at a pinned commit (it is not on PyPI). It pins its own android_env, protobuf, numpy and pandas
# and needs Python >= 3.11 (ANDROID_WORLD_PYTHON builds its venv), so it lives in /opt/android_world with
# guiagent beside it (no deps); the worker runs its tasks there (GUIAGENT_ANDROIDWORLD_PYTHON,
# guiagent.envs.androidworld.runner) when started with `--env-options '{"androidworld": true}'`
# (ANDROID_WORKER_ARGS). Empty: an image without AndroidWorld.
ARG ANDROID_WORLD_SPEC="android_world @ git+https://github.com/google-research/android_world@d9c569f764b3a5629321858de03ff653d0f24056"
ARG ANDROID_WORLD_PYTHON=python3
ARG EXTRA_PIP_PACKAGES=s3fs
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv git \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/guiagent \
 && install -d -o "${USERID:-1300}" -g "${GROUPID:-1301}" -m 0775 /data /data/trajectories

WORKDIR /opt/guiagent/src
COPY pyproject.toml README.md ./
RUN mkdir guiagent && touch guiagent/__init__.py \
 && /opt/guiagent/bin/pip install ".[${GUIAGENT_EXTRAS}]" ${EXTRA_PIP_PACKAGES} \
 && rm -rf guiagent build *.egg-info
RUN if [ -n "${ANDROID_WORLD_SPEC}" ]; then "${ANDROID_WORLD_PYTHON}" -m venv /opt/android_world \
      && /opt/android_world/bin/pip install "${ANDROID_WORLD_SPEC}"; fi
COPY guiagent ./guiagent
RUN /opt/guiagent/bin/pip install --no-deps --force-reinstall . \
 && if [ -x /opt/android_world/bin/pip ]; then /opt/android_world/bin/pip install --no-deps --force-reinstall .; fi \
 && rm -rf build *.egg-info

COPY emulators/scripts/guiagent-worker emulators/scripts/guiagent-healthcheck /usr/local/bin/
COPY emulators/scripts/android-entrypoint.sh /usr/local/bin/guiagent-android-entrypoint
RUN chmod 0755 /usr/local/bin/guiagent-worker /usr/local/bin/guiagent-healthcheck \
      /usr/local/bin/guiagent-android-entrypoint

# Never send docker-android's usage analytics (the entrypoint forces it too).
ENV USER_BEHAVIOR_ANALYTICS=false \
    GUIAGENT_PYTHON=/opt/guiagent/bin/python \
    GUIAGENT_ANDROIDWORLD_PYTHON=/opt/android_world/bin/python \
    GUIAGENT_STORE_URL=/data/trajectories \
    PYTHONUNBUFFERED=1

USER ${USERID:-1300}:${GROUPID:-1301}
WORKDIR /home/androidusr
# Upstream's ENTRYPOINT is ["sh", "-c"]: replace both halves.
ENTRYPOINT ["/usr/local/bin/guiagent-android-entrypoint"]
CMD []
