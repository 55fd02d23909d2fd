from django.urls import path

from . import views

urlpatterns = [
    path("", views.home),
    path("login/<str:username>/", views.login_as),
    path("buy/", views.buy),
]
