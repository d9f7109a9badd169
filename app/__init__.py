"""MLflow Logs API: MLflow runs with complete metric histories, as plain JSON."""
import logging
from pathlib import Path

import swagger_ui_bundle
from flask import Flask, send_from_directory

from app import access, dashboard, observability
from app import cache as run_cache
from app.api import cors, delivery, forwarded, probes, ratelimit, routes, schemas
from app.api import errors as api_errors
from app.api.jsonio import OrjsonProvider
from app.extensions import cache, smorest
from config import Config


def create_app(config=None) -> Flask:
    """App factory; ``config`` (a mapping) overrides settings from the environment."""
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config.from_object(Config)
    if config:
        app.config.update(config)
    logging.basicConfig(level=app.config["LOG_LEVEL"],
                        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    forwarded.trust_proxies(app)  # PROXY_FIX_HOPS
    observability.init_app(app)
    register_extensions(app)
    with app.app_context():  # the spec is made here, with this app's limits (app/api/fields.py)
        register_blueprints(app)
    api_errors.register_errorhandlers(app)
    return app


def register_extensions(app):
    smorest.init_app(app)
    run_cache.init_app(app, cache)
    access.init_app(app)     # ALLOWED_TRACKING_URIS, MLFLOW_PROFILES: checked at start-up
    ratelimit.init_app(app)  # RATE_LIMIT (off when unset)
    delivery.init_app(app)   # Cache-Control, Vary, compression; before cors: runs after it
    cors.init_app(app)       # CORS_ALLOWED_ORIGINS (off when unset)


def register_blueprints(app):
    schemas.prepare_spec(smorest)
    smorest.register_blueprint(routes.blp)
    schemas.document_connection_rule(smorest.spec)
    app.register_blueprint(probes.blp)
    app.register_blueprint(dashboard.blp)  # the page: app/dashboard, docs/dashboard.md
    assets = Path(swagger_ui_bundle.swagger_ui_path)

    @app.get("/docs-assets/<path:filename>")
    def swagger_assets(filename):
        return send_from_directory(assets, filename)
