"""AzureMLEndpointBackend.from_workspace: the real MLClient against a stand-in Azure Resource Manager.

Azure's control plane cannot run here, so :class:`FakeArm` answers ``azure-ai-ml``'s own HTTP requests
(mounted in the ``requests`` session its pipeline sends through) with the ARM JSON of online endpoints,
their keys and their tokens; everything above the wire (the generated client, the REST → entity
conversion, azure-core's error types) is the real ``azure-ai-ml``. The data plane is respx.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import respx
import urllib3
from azure.ai.ml import MLClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import BaseAdapter

from azvision import (
    AuthenticationError,
    AzVisionError,
    BackendConnectionError,
    ConfigurationError,
    NotFoundError,
    RetryPolicy,
    ServiceError,
)
from azvision.backends.azure_ml import TOKEN_SCOPE, AzureMLEndpointBackend
from tests.conftest import make_png

SUBSCRIPTION, GROUP, WORKSPACE = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "vision-rg", "vision-ws"
URI = "https://dogs.westeurope.inference.ml.azure.com/score"
PRIMARY_KEY = "primary-key-7f3a9c1e"
SECONDARY_KEY = "secondary-key-2b8d4f60"
AML_TOKEN = "aml-token-51be0d93"
ARM_TOKEN = "arm-token-c4e7a218"
SECRETS = (PRIMARY_KEY, SECONDARY_KEY, AML_TOKEN, ARM_TOKEN)
WORKSPACE_ENV = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE")
ANSWER = {"label": "beagle", "confidence": 0.9}


@pytest.fixture(autouse=True)
def _no_workspace_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in WORKSPACE_ENV:
        monkeypatch.delenv(name, raising=False)


class RecordingCredential:
    """A TokenCredential that hands out ``token`` and remembers the scopes asked for."""

    def __init__(self, token: str = ARM_TOKEN) -> None:
        self.token = token
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


class NoLoginCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")


@dataclass
class FakeArm(BaseAdapter):  # type: ignore[misc]
    """The ``…/workspaces/{ws}/onlineEndpoints/{name}`` routes of ARM that MLClient's calls reach.

    ``endpoints`` maps a name to its ``properties`` (``authMode``, ``scoringUri``, ``traffic``, ...);
    ``failures`` maps a route suffix (``""``, ``"/listKeys"``, ``"/token"``) to ``(status, body)`` or to
    an exception the connection raises.
    """

    endpoints: dict[str, dict[str, Any]]
    failures: dict[str, tuple[int, Any] | Exception] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)
    keys: tuple[str, str] = (PRIMARY_KEY, SECONDARY_KEY)
    aml_token: str = AML_TOKEN

    def __post_init__(self) -> None:
        super().__init__()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        path = (request.path_url or "").split("?", 1)[0]
        match = re.search(r"/workspaces/([^/]+)/onlineEndpoints/([^/]+)(/\w+)?$", path)
        assert match, path
        name, suffix = match.group(2), match.group(3) or ""
        self.seen.append((str(request.method), suffix))
        failure = self.failures.get(suffix)
        if isinstance(failure, Exception):
            raise failure
        if failure is not None:
            return _response(request, *failure)
        properties = self.endpoints.get(name)
        if properties is None:
            error = {"code": "ResourceNotFound", "message": f"The resource '{name}' was not found."}
            return _response(request, 404, {"error": error})
        if suffix == "":
            return _response(request, 200, _endpoint_json(path, name, properties))
        if suffix == "/deployments":
            return _response(request, 200, {"value": []})
        if suffix == "/listKeys":
            return _response(request, 200, {"primaryKey": self.keys[0], "secondaryKey": self.keys[1]})
        if suffix == "/token":
            expiry = int(time.time()) + 3600
            token = {"accessToken": self.aml_token, "expiryTimeUtc": expiry, "tokenType": "Bearer"}
            return _response(request, 200, {**token, "refreshAfterTimeUtc": expiry - 900})
        return _response(request, 400, {"error": {"code": "BadRequest", "message": suffix}})

    def close(self) -> None:
        pass

    def ml_client(self, credential: Any = None) -> MLClient:
        """A real MLClient whose HTTP requests this stand-in answers."""
        session = requests.Session()
        session.mount("https://", self)
        return MLClient(
            credential or RecordingCredential(),
            SUBSCRIPTION,
            GROUP,
            WORKSPACE,
            transport=RequestsTransport(session=session, session_owner=False),
            retry_total=0,
            enable_telemetry=False,
        )


def endpoint(uri: str | None = URI, auth_mode: str = "Key", **extra: Any) -> dict[str, Any]:
    """ARM ``properties`` of an online endpoint (REST auth modes: Key, AMLToken, AADToken)."""
    state = "Succeeded" if uri else "Creating"
    return {"authMode": auth_mode, "scoringUri": uri, "provisioningState": state, **extra}


def _endpoint_json(path: str, name: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": path,
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
        "location": "westeurope",
        "kind": "Managed",
        "identity": {"type": "SystemAssigned"},
        "properties": dict(properties),
    }


def _response(request: requests.PreparedRequest, status: int, body: Any) -> requests.Response:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "x-ms-request-id": "arm-request-1"}
    response = requests.Response()
    response.status_code, response.reason, response.url = status, "stand-in", str(request.url)
    response.request = request
    response.headers.update(headers)
    response.raw = urllib3.HTTPResponse(io.BytesIO(data), headers, status, preload_content=False)
    return response


def assert_no_secret(*objects: object) -> None:
    for obj in objects:
        for text in (repr(obj), str(obj)):
            assert not any(secret in text for secret in SECRETS), text


def _classify(backend: AzureMLEndpointBackend) -> httpx.Request:
    """Classify one image through ``backend`` against a respx scoring URI; the request it sent."""
    with respx.mock(assert_all_called=True) as router, backend:
        route = router.post(URI).mock(return_value=httpx.Response(200, json=ANSWER))
        assert backend.classify(make_png()).label == "beagle"
    return route.calls.last.request


@pytest.mark.parametrize(
    ("auth_mode", "secret", "route"), [("Key", PRIMARY_KEY, "/listKeys"), ("AMLToken", AML_TOKEN, "/token")]
)
def test_key_and_aml_token_endpoints_send_the_workspace_secret(
    auth_mode: str, secret: str, route: str
) -> None:
    arm = FakeArm({"dogs": endpoint(auth_mode=auth_mode)})
    backend = AzureMLEndpointBackend.from_workspace("dogs", ml_client=arm.ml_client(), retry=RetryPolicy(1))
    assert backend.scoring_uri == URI
    assert ("POST", route) in arm.seen
    assert_no_secret(backend)
    assert _classify(backend).headers["Authorization"] == f"Bearer {secret}"


def test_aad_endpoint_uses_the_credential_and_lists_no_keys() -> None:
    arm = FakeArm({"dogs": endpoint(auth_mode="AADToken")})
    data_plane = RecordingCredential("entra-token")
    backend = AzureMLEndpointBackend.from_workspace("dogs", ml_client=arm.ml_client(), credential=data_plane)
    assert "auth='entra'" in repr(backend)
    assert _classify(backend).headers["Authorization"] == "Bearer entra-token"
    assert data_plane.scopes == [TOKEN_SCOPE]
    assert [suffix for _, suffix in arm.seen if suffix in ("/listKeys", "/token")] == []


def test_aad_endpoint_without_credential_reuses_the_ml_clients() -> None:
    arm = FakeArm({"dogs": endpoint(auth_mode="AADToken")})
    workspace_credential = RecordingCredential()
    backend = AzureMLEndpointBackend.from_workspace("dogs", ml_client=arm.ml_client(workspace_credential))
    assert _classify(backend).headers["Authorization"] == f"Bearer {ARM_TOKEN}"
    assert TOKEN_SCOPE in workspace_credential.scopes


def test_deployment_is_checked_against_the_endpoint_and_sent() -> None:
    arm = FakeArm({"dogs": endpoint(traffic={"blue": 90, "green": 10})})
    with pytest.raises(NotFoundError, match=r"no deployment 'purple'.*blue, green"):
        AzureMLEndpointBackend.from_workspace("dogs", ml_client=arm.ml_client(), deployment="purple")
    backend = AzureMLEndpointBackend.from_workspace("dogs", ml_client=arm.ml_client(), deployment="green")
    assert _classify(backend).headers["azureml-model-deployment"] == "green"


def test_options_reach_the_backend() -> None:
    arm = FakeArm({"dogs": endpoint()})
    backend = AzureMLEndpointBackend.from_workspace(
        "dogs", ml_client=arm.ml_client(), request_format="json", timeout=5.0
    )
    assert (backend.request_format, backend.timeout) == ("json", 5.0)
    assert json.loads(_classify(backend).content).keys() == {"image"}


def test_unknown_endpoint_is_not_found_naming_endpoint_and_workspace() -> None:
    arm = FakeArm({})
    with pytest.raises(NotFoundError) as info:
        AzureMLEndpointBackend.from_workspace("cats", ml_client=arm.ml_client())
    message = str(info.value)
    assert "'cats'" in message and f"workspace {WORKSPACE!r}" in message and GROUP in message
    assert info.value.status_code == 404 and info.value.code == "ResourceNotFound"
    assert isinstance(info.value.__cause__, ResourceNotFoundError)


def test_endpoint_still_being_created_has_no_scoring_uri() -> None:
    arm = FakeArm({"dogs": endpoint(uri=None)})
    with pytest.raises(NotFoundError, match=r"no scoring URI yet \(provisioning state: Creating\)"):
        AzureMLEndpointBackend.from_workspace("dogs", ml_client=arm.ml_client())


def test_refused_credential_is_an_authentication_error() -> None:
    body = {"error": {"code": "InvalidAuthenticationToken", "message": "The access token is invalid."}}
    arm = FakeArm({"dogs": endpoint()}, failures={"": (401, body)})
    with pytest.raises(AuthenticationError, match=r"'dogs'.*az login") as info:
        AzureMLEndpointBackend.from_workspace("dogs", ml_client=arm.ml_client())
    assert info.value.status_code == 401 and isinstance(info.value.__cause__, ClientAuthenticationError)
    assert_no_secret(info.value)


def test_no_right_to_list_keys_is_an_authentication_error() -> None:
    body = {"error": {"code": "AuthorizationFailed", "message": "does not have authorization to listKeys"}}
    arm = FakeArm({"dogs": endpoint()}, failures={"/listKeys": (403, body)})
    with pytest.raises(AuthenticationError) as info:
        AzureMLEndpointBackend.from_workspace("dogs", ml_client=arm.ml_client())
    message = str(info.value)
    assert "keys of endpoint 'dogs'" in message and "AuthorizationFailed" in message
    assert "role on the workspace" in message and "Image Analysis" not in message
    assert_no_secret(info.value)


def test_control_plane_failure_is_a_service_error_about_the_workspace() -> None:
    arm = FakeArm({"dogs": endpoint()}, failures={"": (500, {"error": {"code": "InternalError"}})})
    with pytest.raises(ServiceError) as info:
        AzureMLEndpointBackend.from_workspace("dogs", ml_client=arm.ml_client())
    assert info.value.status_code == 500 and info.value.request_id == "arm-request-1"
    assert "Image Analysis" not in str(info.value)


def test_unreachable_control_plane_is_a_connection_error() -> None:
    arm = FakeArm({"dogs": endpoint()}, failures={"": requests.ConnectionError("connection refused")})
    with pytest.raises(BackendConnectionError) as info:
        AzureMLEndpointBackend.from_workspace("dogs", ml_client=arm.ml_client())
    assert "the Azure ML workspace" in str(info.value) and "Image Analysis" not in str(info.value)


def test_workspace_coordinates_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg-from-env")
    monkeypatch.setenv("AZUREML_WORKSPACE", "ws-from-env")
    # The real MLClient is built; the credential fails before any request leaves the machine.
    with pytest.raises(AuthenticationError) as info:
        AzureMLEndpointBackend.from_workspace("dogs", workspace="ws-given", credential=NoLoginCredential())
    assert "workspace 'ws-given' (resource group 'rg-from-env'" in str(info.value)
    assert isinstance(info.value.__cause__, ClientAuthenticationError)


@pytest.mark.parametrize(
    ("arg", "env"), list(zip(("subscription_id", "resource_group", "workspace"), WORKSPACE_ENV, strict=True))
)
def test_missing_workspace_setting_names_argument_and_variable(
    monkeypatch: pytest.MonkeyPatch, arg: str, env: str
) -> None:
    given = {"subscription_id": SUBSCRIPTION, "resource_group": GROUP, "workspace": WORKSPACE}
    del given[arg]
    with pytest.raises(ConfigurationError) as info:
        AzureMLEndpointBackend.from_workspace("dogs", credential=NoLoginCredential(), **given)
    assert f"missing {arg}" in str(info.value) and env in str(info.value)


def test_ml_client_and_workspace_coordinates_are_exclusive() -> None:
    with pytest.raises(ConfigurationError, match="either ml_client"):
        AzureMLEndpointBackend.from_workspace("dogs", ml_client=FakeArm({}).ml_client(), workspace="other")


def test_missing_ml_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.ai.ml", None)  # what an absent package looks like to import
    with pytest.raises(ConfigurationError) as info:
        AzureMLEndpointBackend.from_workspace("dogs", subscription_id=SUBSCRIPTION)
    assert "from_workspace" in str(info.value) and "pip install 'azvision[ml]'" in str(info.value)


def test_azvision_and_the_aml_backend_do_not_import_azure_ai_ml() -> None:
    code = (
        "import sys, azvision, azvision.backends.azure_ml, azvision.backends._aml_workspace; "
        "print('azure.ai.ml' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_errors_are_typed_azvision_errors() -> None:
    arm = FakeArm({"dogs": endpoint()}, failures={"/listKeys": (409, {"error": {"code": "Conflict"}})})
    with pytest.raises(AzVisionError) as info:
        AzureMLEndpointBackend.from_workspace("dogs", ml_client=arm.ml_client())
    assert info.value.status_code == 409 and info.value.backend == "azure_ml"
