"""The protected endpoint: a small JSON body once ``HasAPIKey`` has accepted the key."""

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_api_key.permissions import HasAPIKey


class Protected(APIView):
    permission_classes = (HasAPIKey,)

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response({"ok": True})
