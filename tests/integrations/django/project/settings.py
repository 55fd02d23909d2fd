"""Settings of the Django project the integration tests run (SQLite in a temporary file)."""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "tests.integrations.django.project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "rest_framework.authtoken",
    "moetrack.integrations.django",
    "tests.integrations.django.project.shop",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "moetrack.integrations.django.MoetrackMiddleware",
]

AUTHENTICATION_BACKENDS = ["tests.integrations.django.project.shop.backends.CountingBackend"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("MOETRACK_TEST_DJANGO_DB")
        or os.path.join(tempfile.gettempdir(), "moetrack-django-tests.sqlite3"),
    }
}

# The credentials come from the test's emulator (the tests call moetrack.init()).
MOETRACK: dict[str, object] = {"flush_interval": 0.05}

# Fast hashing: the tests create many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
