# The lossradar server (FastAPI + dashboard). It never imports torch, so only the [server]
# extra is installed, read from pyproject.toml so the list lives in one place.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['optional-dependencies']['server']))" > /tmp/server-requirements.txt \
 && pip install -r /tmp/server-requirements.txt

COPY trainer_hook ./trainer_hook
COPY server ./server
COPY dashboard ./dashboard
COPY lossradar ./lossradar
RUN pip install --no-deps . && useradd --create-home --uid 10001 lossradar

USER lossradar
EXPOSE 8765
ENV LOSSRADAR_HOST=0.0.0.0 LOSSRADAR_PORT=8765
CMD ["sh", "-c", "lossradar db upgrade && exec lossradar serve"]
