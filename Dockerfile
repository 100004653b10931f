# storepulse worker, exporter and producer image: `docker compose build` (see docker-compose.yml).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user owning the state directory (named volumes copy this ownership).
RUN groupadd --system --gid 10001 storepulse \
 && useradd --system --uid 10001 --gid storepulse --home-dir /var/lib/storepulse \
        --shell /usr/sbin/nologin storepulse \
 && mkdir -p /var/lib/storepulse \
 && chown storepulse:storepulse /var/lib/storepulse

WORKDIR /opt/storepulse
# The exact, hash-checked versions of requirements-runtime.lock (`make lock`), in a layer of
# their own that a code change does not rebuild; then the project without resolving again.
COPY requirements-runtime.lock ./
RUN pip install --require-hashes -r requirements-runtime.lock
COPY pyproject.toml README.md ./
COPY streams/ streams/
COPY producers/ producers/
COPY storepulse/ storepulse/
RUN pip install --no-deps . && pip check && storepulse --help >/dev/null

USER storepulse
WORKDIR /var/lib/storepulse
ENV STOREPULSE_STATE_DIR=/var/lib/storepulse \
    STOREPULSE_EXPORTER_HOST=0.0.0.0 \
    STOREPULSE_EXPORTER_PORT=19100
EXPOSE 19100

ENTRYPOINT ["storepulse"]
CMD ["--help"]
