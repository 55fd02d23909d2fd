"""A minimal Django site instrumented with moetrack.

moetrack's credentials and endpoint come from the MOETRACK_* environment variables (see the
README); ``MOETRACK`` below holds the rest.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "example_site.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "moetrack.integrations.django",  # calls moetrack.init() with settings.MOETRACK
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "moetrack.integrations.django.MoetrackMiddleware",  # binds the signed-in user
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DJANGO_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

MOETRACK = {
    # The username is the customer id (the default, the primary key, is "1" for the first
    # user, which the Data API refuses).
    "CUSTOMER_ID": "username",
    "flush_interval": 0.5,
}
