# The charter-streams worker image (for users who have Docker; the project itself is tested without it).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip install --no-cache-dir .
ENV CHARTER_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["charter"]
CMD ["worker"]
