"""One route: ``GET /api/protected``."""

from django.urls import path

from drf_peer.views import Protected

urlpatterns = [path("api/protected", Protected.as_view())]
