# One image for both jobs of the service (docker-compose.yml):
#   the offline job:  build-job   (docker/build-job.sh: python -m models.build, parameters from environment variables)
#   the API:          python -m app   (the default command)
FROM python:3.11-slim
LABEL org.opencontainers.image.title="simserve"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# implicit's compiled ALS/BPR link OpenMP's runtime, which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# The non-root user both jobs run as. /artifacts and /events belong to it: a new named volume mounted there
# starts as a copy of this folder, so the offline job can write /artifacts (the API mounts it read-only) and
# the API its experiments' events database and spill files in /events.
RUN useradd --create-home --home-dir /home/simserve --uid 10001 --user-group --shell /usr/sbin/nologin simserve \
    && mkdir -p /artifacts /events && chown simserve:simserve /artifacts /events
WORKDIR /srv/simserve

# Dependency layer: depends on pyproject.toml only, so editing models/ or app/ rebuilds in seconds.
# Runtime dependencies exactly as pinned in [project].dependencies (no dev/bench extras), plus the
# build backend named in [build-system].requires for the --no-deps install of our own package below.
COPY pyproject.toml ./
RUN python -c 'import tomllib; m = tomllib.load(open("pyproject.toml", "rb")); \
print("\n".join(m["build-system"]["requires"] + m["project"]["dependencies"]))' > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
# matplotlib's font cache, built once here instead of by every run of the job (the heatmaps)
USER simserve
RUN python -c "import matplotlib.font_manager"
USER root

COPY models/ models/
COPY app/ app/
COPY docker/build-job.sh /usr/local/bin/build-job
RUN chmod 0755 /usr/local/bin/build-job \
    && pip install --no-deps --no-build-isolation . \
    && rm -rf build *.egg-info models app

VOLUME /artifacts /events
ENV ARTIFACTS_DIR=/artifacts \
    EVENTS_DIR=/events \
    HOST=0.0.0.0 \
    PORT=8000
USER simserve
EXPOSE 8000

# slim has no curl: python's urllib fails (exit 1) on anything but a 2xx, so this is "ready", not just "up".
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=4)"]

CMD ["python", "-m", "app"]
