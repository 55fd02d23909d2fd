from django.urls import path

from .shop import views

urlpatterns = [
    path("track/", views.track),
    path("quiet/", views.quiet),
    path("async-track/", views.async_track),
    path("async-quiet/", views.async_quiet),
    path("api/track/", views.ApiTrack.as_view()),
    path("context/", views.context),
]
