# sitrep's image: `docker build -t sitrep .`, then `docker run --env-file .env -p 3000:3000 sitrep`.
# tests/test_image_recipe.py does what this file does in a fresh virtual environment, and
# checks the claims below, so the recipe cannot rot while no container engine runs in CI.
# A versioned base: the same Python and Debian release at every build (bump it on purpose).
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The dependency layer: every version pinned and hash-checked from the lock (`scripts/dev
# lock` writes it), rebuilt only when the lock changes, not at every change to the code.
WORKDIR /src
COPY requirements/runtime.lock requirements/runtime.lock
RUN pip install --require-hashes --no-deps -r requirements/runtime.lock

# Then only what `pip install .` reads: the project file, the README it names, the packages;
# built with the pinned setuptools already installed, its dependencies already there.
COPY pyproject.toml README.md ./
COPY bot bot
COPY handlers handlers
COPY scheduler scheduler
COPY store store
RUN pip install --no-deps --no-build-isolation . && cd / && rm -rf /src

# A user of its own; its home holds the SQLite file when DATABASE_URL is left at its default.
RUN useradd --create-home --home-dir /var/lib/sitrep --uid 10001 --user-group sitrep
USER sitrep
WORKDIR /var/lib/sitrep
VOLUME /var/lib/sitrep

ENV PORT=3000
# METRICS_PORT (9090 unless set) serves /metrics, /healthz and /readyz in both modes; HTTP
# mode serves Slack and the two probes on PORT too. The HEALTHCHECK asks PORT in HTTP mode,
# METRICS_PORT in Socket Mode (slim has no curl).
EXPOSE 3000 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; e = os.environ; port = e.get('METRICS_PORT', '9090') if e.get('SLACK_APP_TOKEN') else e.get('PORT', '3000'); urllib.request.urlopen('http://127.0.0.1:%s/healthz' % port, timeout=4)"]

CMD ["sitrep", "run"]
