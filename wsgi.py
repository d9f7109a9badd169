"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``, or ``python wsgi.py``."""
from app import create_app

app = create_app()

if __name__ == "__main__":
    # Quick start only (Flask's threaded dev server); production runs gunicorn.
    app.run(host=app.config["HOST"], port=app.config["PORT"], threaded=True)
