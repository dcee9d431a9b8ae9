# dagkeeper: one image for every daemon. The command picks the daemon:
#   docker run IMAGE master | worker | api | migrate   (any `dagkeeper` sub-command)
# Settings come from DAGKEEPER_* environment variables (see core/settings.py and the README);
# docker-compose.yml runs a whole cluster from this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# the non-root user every daemon runs as; its home is the data dir (tokens, keys, task logs)
RUN groupadd --system dagkeeper \
    && useradd --system --gid dagkeeper --home-dir /var/lib/dagkeeper --create-home \
       --shell /usr/sbin/nologin dagkeeper

WORKDIR /opt/dagkeeper

# the package, its migrations (`dagkeeper migrate` reads alembic.ini and alembic/ beside the
# source: PYTHONPATH below) and the web UI bundle already built into api/static/ui
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY core ./core
COPY coord ./coord
COPY db ./db
COPY master ./master
COPY worker ./worker
COPY api ./api
COPY ops ./ops
COPY dagkeeper ./dagkeeper
RUN pip install . \
    && test -f api/static/ui/index.html \
    && python -c "import ops.cli, api.app, master.daemon, worker.daemon"

ENV PYTHONPATH=/opt/dagkeeper \
    DAGKEEPER_DATA_DIR=/var/lib/dagkeeper \
    HEALTHCHECK_ROLE=api

USER dagkeeper
WORKDIR /var/lib/dagkeeper

# the API's port, and the metrics and log-server ports docker-compose.yml fixes for the daemons
EXPOSE 12345 9108 12346

# healthy while the daemon answers on its own endpoint (ops/healthcheck.py): a master or worker
# needs a fixed DAGKEEPER_METRICS__PORT; set HEALTHCHECK_ROLE to the daemon this container runs
# (docker-compose.yml gives every service its own check instead)
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -m ops.healthcheck "$HEALTHCHECK_ROLE"

ENTRYPOINT ["dagkeeper"]
CMD ["api"]
