"""A small Flask shop instrumented with moetrack and Flask-Login.

Run: ``flask --app app run`` (see README.md).
"""

from __future__ import annotations

import os

from flask import Flask, redirect
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from moetrack.integrations.flask import Moetrack

import moetrack


class User(UserMixin):
    def __init__(self, username: str) -> None:
        self.id = username  # Flask-Login's get_id() gives this: the customer id


app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ.get("SECRET_KEY", "example-only-not-secret"),
    # MOETRACK_APP_ID / MOETRACK_API_KEY / MOETRACK_ENDPOINT may also be set here; left out,
    # moetrack reads the environment variables of the same names.
    MOETRACK_OPTIONS={"flush_interval": 0.5},
)
login_manager = LoginManager(app)
moetrack_ext = Moetrack(app)  # the current_user of each request is the customer


@login_manager.user_loader
def load_user(user_id: str) -> User:
    return User(user_id)


@app.get("/")
def home() -> str:
    moetrack.track("Viewed Home")  # dropped as no_customer_id when nobody is signed in
    name = current_user.get_id() if current_user.is_authenticated else "anonymous"
    return f"hello {name}\n"


@app.get("/login/<username>")
def login(username: str) -> str:
    """A demo sign-in without a password: never do this in a real app."""
    login_user(User(username))
    moetrack.identify(first_name=username.title())
    moetrack.track("Signed In", method="demo")
    return f"signed in as {username}\n"


@app.get("/buy")
def buy() -> str:
    moetrack.track("Purchase", price=3999, currency="INR")
    return "thank you\n"


@app.get("/logout")
def logout() -> object:
    logout_user()
    return redirect("/")


if __name__ == "__main__":
    app.run(port=5000)
