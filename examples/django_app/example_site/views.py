from django.contrib.auth import login
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse

import moetrack


def home(request: HttpRequest) -> HttpResponse:
    # Tracked for the signed-in user; an anonymous visit is dropped as "no_customer_id".
    moetrack.track("Viewed Home")
    who = request.user.get_username() or "anonymous"
    return HttpResponse(f"hello {who}\n")


def login_as(request: HttpRequest, username: str) -> HttpResponse:
    """A demo sign-in without a password: never do this in a real site."""
    user, _ = User.objects.get_or_create(username=username)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    # Signed in a moment ago, in this very view: the middleware's lookup sees it.
    moetrack.identify(first_name=username.title())
    moetrack.track("Signed In", method="demo")
    return HttpResponse(f"signed in as {username}\n")


def buy(request: HttpRequest) -> HttpResponse:
    moetrack.track("Purchase", price=3999, currency="INR")
    return HttpResponse("thank you\n")
