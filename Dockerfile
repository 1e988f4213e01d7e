# One image for every CXPT service; the command picks the service (python -m services.<name>).
# Build: docker build -t cxpt/services:dev .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
RUN pip install --no-cache-dir uv==0.13.9
COPY requirements.lock pyproject.toml README.md ./
RUN uv venv /opt/venv && uv pip install --python /opt/venv/bin/python --no-cache -r requirements.lock
COPY services ./services
COPY deploy/__init__.py ./deploy/__init__.py
COPY schemas ./schemas
RUN uv pip install --python /opt/venv/bin/python --no-deps --no-cache .

FROM python:3.11.11-slim-bookworm
RUN groupadd --system --gid 10001 cxpt && useradd --system --uid 10001 --gid cxpt --no-create-home cxpt
COPY --from=build /opt/venv /opt/venv
# Schemas are read at run time (manifest ids, current versions); services resolve them from here.
COPY --from=build /src/schemas /app/schemas
COPY --from=build /src/services /app/services
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LOG_JSON=true
USER 10001:10001
CMD ["python", "-m", "services.common.bootstrap"]
