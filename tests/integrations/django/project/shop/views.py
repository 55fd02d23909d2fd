from __future__ import annotations

from typing import Any

from django.http import HttpResponse, JsonResponse
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

import moetrack


def track(request: Any) -> HttpResponse:
    moetrack.track("Viewed", page=request.GET.get("page", "home"))
    return HttpResponse("tracked")


def quiet(request: Any) -> HttpResponse:
    return HttpResponse("nothing tracked")


async def async_track(request: Any) -> HttpResponse:
    moetrack.track("AsyncViewed")
    return HttpResponse("tracked")


async def async_quiet(request: Any) -> HttpResponse:
    return HttpResponse("nothing tracked")


def context(request: Any) -> JsonResponse:
    ctx = moetrack.current_context()
    return JsonResponse({"fields": sorted(ctx), "platform": ctx.get("platform")})


class ApiTrack(APIView):
    authentication_classes = (TokenAuthentication,)
    permission_classes = (IsAuthenticated,)

    def post(self, request: Any) -> Response:
        moetrack.track("ApiCalled", via="token")
        return Response({"user": request.user.username})
