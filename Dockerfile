# syntax=docker/dockerfile:1
# Hearth's container image: Debian slim with Python 3.11, Hearth in a venv at /opt/hearth,
# run as an unprivileged user, its data in the /var/lib/hearth volume.
#
#   docker build -t hearth .
#   docker run -p 8080:8080 -v hearth-data:/var/lib/hearth hearth
#
# Several nodes with Redis and a reverse proxy: deploy/compose.yaml. The image's config
# is deploy/container/hearth.toml; mount yours at /etc/hearth/hearth.toml.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY spaces spaces
COPY moderation moderation
COPY web web
COPY client client
COPY config config
# The wheel (package data included), then a venv with it and its pinned dependencies.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/hearth \
 && /opt/hearth/bin/pip install --no-cache-dir --no-compile -c constraints.txt /wheels/hearth-*.whl \
 && /opt/hearth/bin/hearth --version

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 hearth \
 && useradd --system --uid 10001 --gid hearth --home-dir /var/lib/hearth --no-create-home \
      --shell /usr/sbin/nologin hearth \
 && install -d -o hearth -g hearth -m 0700 /var/lib/hearth /var/lib/hearth-secrets
COPY --from=build /opt/hearth /opt/hearth
COPY deploy/container/hearth.toml /etc/hearth/hearth.toml
ENV PATH=/opt/hearth/bin:$PATH \
    HEARTH_CONFIG=/etc/hearth/hearth.toml \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/hearth
VOLUME ["/var/lib/hearth"]
EXPOSE 8080
# Liveness only (the process serves HTTP); load balancers use /readyz (docs/operations.md).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/livez', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["hearth"]
CMD ["serve", "--log-format", "json"]
