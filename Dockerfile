# Machines without a registry build on a local stand-in (tests/support/base_image.py).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8001
WORKDIR /srv

COPY requirements.txt .
# The user needs a home: gunicorn (25.1+) puts its control socket in ~/.gunicorn.
RUN pip install --no-cache-dir -r requirements.txt \
 && useradd --system --uid 10001 --create-home --home-dir /home/app app

COPY config.py wsgi.py gunicorn.conf.py ./
COPY app ./app

USER app
EXPOSE 8001
# Liveness only (GET /healthz does no I/O); the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD python -c "import os, urllib.request; port = os.environ.get('GUNICORN_BIND', ':' + os.environ.get('PORT', '8001')).rsplit(':', 1)[1]; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % port, timeout=4)"
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
