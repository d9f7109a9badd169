"""Validators whose bounds are the app's settings, read when a request is validated and
when the OpenAPI spec is made, so ``create_app({"MAX_RUNS_LIMIT": 5})`` enforces and
publishes 5. Outside an app (a schema used on its own) they fall back to ``Config``."""
from flask import current_app, has_app_context
from marshmallow import validate

from config import Config


def setting(name):
    return current_app.config[name] if has_app_context() else getattr(Config, name)


class SettingMax:
    """Mixed into a marshmallow validator with ``min``/``max``: ``max`` is the setting
    ``max_setting``, read each time it is needed."""

    def __init__(self, min=None, *, max_setting: str, **kwargs):
        self.max_setting = max_setting
        super().__init__(min=min, max=None, **kwargs)

    @property
    def max(self):
        return setting(self.max_setting)

    @max.setter
    def max(self, value):  # the validator's __init__ assigns it; the setting decides
        pass


class SettingRange(SettingMax, validate.Range):
    """``Range`` up to a setting."""


class SettingLength(SettingMax, validate.Length):
    """``Length`` up to a setting."""
