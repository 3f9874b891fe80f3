# A Tocsin worker image. Kafka and ClickHouse run as their own services (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY detectors ./detectors
COPY models ./models
RUN pip install --no-cache-dir .

RUN useradd --create-home tocsin
USER tocsin
ENV TOCSIN_WORKER_DATA_DIR=/home/tocsin/worker
EXPOSE 6066
ENTRYPOINT ["tocsin"]
CMD ["worker"]
