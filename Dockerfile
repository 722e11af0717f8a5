# The charter-streams worker image (for users who have Docker; the project itself is tested without it).
# The base image is pinned to a patch release; bump it deliberately.
FROM python:3.11.14-slim-bookworm
RUN useradd --create-home --uid 10001 --user-group charter && mkdir /data && chown charter:charter /data
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip install --no-cache-dir .
USER charter
ENV CHARTER_DATA_DIR=/data
VOLUME ["/data"]
# /metrics, /healthz and /ready; bind every interface inside the container so Prometheus can scrape it
ENV CHARTER_WEB_HOST=0.0.0.0 CHARTER_WEB_PORT=6066
EXPOSE 6066
# ready: joined, every assigned partition's state loaded and caught up (a worker catching up is alive, not ready)
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["charter", "health", "/ready"]
ENTRYPOINT ["charter"]
CMD ["worker"]
