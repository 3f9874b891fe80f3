# A Tocsin worker image. Kafka and ClickHouse run as their own services (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY pipeline ./pipeline
COPY detectors ./detectors
COPY models ./models
# a C compiler only while installing: it builds the OTLP metrics wire scanner
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . \
    && apt-get purge -y --auto-remove gcc libc6-dev && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home tocsin
USER tocsin
ENV TOCSIN_WORKER_DATA_DIR=/home/tocsin/worker
EXPOSE 6066
ENTRYPOINT ["tocsin"]
CMD ["worker"]
