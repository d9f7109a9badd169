FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8001
WORKDIR /srv

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt \
 && useradd --system --uid 10001 --no-create-home app

COPY config.py wsgi.py gunicorn.conf.py ./
COPY app ./app

USER app
EXPOSE 8001
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
