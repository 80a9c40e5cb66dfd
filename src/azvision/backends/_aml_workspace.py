"""Find an Azure ML online endpoint's scoring URI and credentials from its workspace (the ``ml`` extra).

The control plane (``azure-ai-ml``'s ``MLClient``) says where the endpoint listens and how it
authenticates; `AzureMLEndpointBackend.from_workspace` then talks to the data plane as usual.

Example:
    >>> from azvision.backends._aml_workspace import find_endpoint
    >>> access = find_endpoint(  # doctest: +SKIP
    ...     "dogs", subscription_id="...", resource_group="rg", workspace="ws")
    >>> access.scoring_uri, access.auth_mode  # doctest: +SKIP
    ('https://dogs.westeurope.inference.ml.azure.com/score', 'key')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential

from .._config import ENV, Secret, setting
from .._error_mapping import error_from_azure_core
from .._errors import AuthenticationError, AzVisionError, ConfigurationError, NotFoundError, missing_extra

__all__ = ["EndpointAccess", "find_endpoint"]

_BACKEND = "azure_ml"
_WHAT = "AzureMLEndpointBackend.from_workspace"


@dataclass(frozen=True)
class EndpointAccess:
    """Where an online endpoint scores and how to authenticate: a ``key`` or an Entra ``credential``.

    Example:
        >>> EndpointAccess("https://x.inference.ml.azure.com/score", "key", key=Secret("k")).key
        Secret('***')
    """

    scoring_uri: str
    auth_mode: str
    key: Secret | None = None
    credential: TokenCredential | None = None


def find_endpoint(
    endpoint_name: str,
    *,
    subscription_id: str | None = None,
    resource_group: str | None = None,
    workspace: str | None = None,
    credential: TokenCredential | None = None,
    deployment: str | None = None,
    ml_client: Any = None,
) -> EndpointAccess:
    """Read endpoint ``endpoint_name`` from its workspace: scoring URI, auth mode and key or token.

    Without ``ml_client`` an ``azure.ai.ml.MLClient`` is built from the workspace coordinates (explicit,
    else ``AZURE_SUBSCRIPTION_ID``, ``AZURE_RESOURCE_GROUP``, ``AZUREML_WORKSPACE``) and ``credential``
    (default ``DefaultAzureCredential()``). A ``deployment`` (or ``AZUREML_DEPLOYMENT``) the endpoint does
    not have is a `NotFoundError` now rather than at the first image.

    Example:
        >>> find_endpoint("dogs", ml_client=my_ml_client).auth_mode  # doctest: +SKIP
        'key'
    """
    if ml_client is None:
        ml_client, credential = _build_client(subscription_id, resource_group, workspace, credential)
    elif any(value is not None for value in (subscription_id, resource_group, workspace)):
        raise ConfigurationError(
            "pass either ml_client=... or subscription_id/resource_group/workspace, not both"
        )
    where = _where(ml_client)
    operations = ml_client.online_endpoints
    endpoint = _call(operations.get, endpoint_name, what=f"endpoint {endpoint_name!r}", where=where)
    scoring_uri = getattr(endpoint, "scoring_uri", None)
    if not scoring_uri:
        state = getattr(endpoint, "provisioning_state", None)
        state = getattr(state, "value", state)  # an EndpointProvisioningState enum from the REST model
        raise NotFoundError(
            f"endpoint {endpoint_name!r} in {where} has no scoring URI yet (provisioning state: {state})",
            backend=_BACKEND,
        )
    _check_deployment(endpoint, endpoint_name, deployment, where)
    auth_mode = str(getattr(endpoint, "auth_mode", None) or "key").lower()
    if auth_mode == "aad_token":
        # The backend gets and renews Entra tokens from the credential itself, so nothing here expires.
        return EndpointAccess(scoring_uri, auth_mode, credential=credential or _credential_of(ml_client))
    if auth_mode not in ("key", "aml_token"):
        raise ConfigurationError(
            f"endpoint {endpoint_name!r} uses auth mode {auth_mode!r}; azvision supports key, aml_token "
            "and aad_token"
        )
    what = f"the keys of endpoint {endpoint_name!r}"
    keys = _call(operations.get_keys, endpoint_name, what=what, where=where)
    secret = getattr(keys, "primary_key" if auth_mode == "key" else "access_token", None)
    if not secret:
        raise AuthenticationError(
            f"the workspace gave no {'key' if auth_mode == 'key' else 'token'} for endpoint "
            f"{endpoint_name!r} in {where}",
            backend=_BACKEND,
        )
    return EndpointAccess(scoring_uri, auth_mode, key=Secret(str(secret)))


def _build_client(
    subscription_id: str | None,
    resource_group: str | None,
    workspace: str | None,
    credential: TokenCredential | None,
) -> tuple[Any, TokenCredential]:
    try:
        from azure.ai.ml import MLClient
    except ImportError as exc:
        raise missing_extra(exc, what=_WHAT, extra="ml") from exc
    env = ENV["azure_ml"]
    subscription = setting(subscription_id, arg="subscription_id", env=env["subscription_id"])
    group = setting(resource_group, arg="resource_group", env=env["resource_group"])
    name = setting(workspace, arg="workspace", env=env["workspace"])
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return MLClient(credential, subscription, group, name), credential


def _credential_of(ml_client: Any) -> TokenCredential:
    # The caller's MLClient already holds a working credential: reuse it rather than guess another.
    found = getattr(ml_client, "_credential", None)
    if found is not None:
        return found  # type: ignore[no-any-return]
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _where(ml_client: Any) -> str:
    workspace = getattr(ml_client, "workspace_name", None)
    group = getattr(ml_client, "resource_group_name", None)
    subscription = getattr(ml_client, "subscription_id", None)
    if not workspace:
        return "the workspace"
    return f"workspace {workspace!r} (resource group {group!r}, subscription {subscription!r})"


def _check_deployment(endpoint: Any, endpoint_name: str, deployment: str | None, where: str) -> None:
    wanted = setting(deployment, arg="deployment", env=ENV["azure_ml"]["deployment"], required=False)
    known = {str(name).lower(): str(name) for name in (getattr(endpoint, "traffic", None) or {})}
    if wanted and known and wanted.lower() not in known:
        raise NotFoundError(
            f"endpoint {endpoint_name!r} in {where} has no deployment {wanted!r}; its deployments: "
            f"{', '.join(sorted(known.values()))}",
            backend=_BACKEND,
        )


def _call(method: Any, endpoint_name: str, *, what: str, where: str) -> Any:
    from azure.core.exceptions import AzureError

    try:
        return method(endpoint_name)
    except AzureError as exc:
        raise _control_plane_error(exc, what=what, where=where) from exc


def _control_plane_error(exc: Exception, *, what: str, where: str) -> AzVisionError:
    from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError

    status = getattr(exc, "status_code", None)
    code = getattr(getattr(exc, "error", None), "code", None)
    if isinstance(exc, ResourceNotFoundError):
        return NotFoundError(
            f"{what} was not found in {where}: check the names of the endpoint, workspace, resource group "
            "and subscription",
            status_code=status or 404,
            code=code,
            backend=_BACKEND,
        )
    if isinstance(exc, ClientAuthenticationError):
        return AuthenticationError(
            f"reading {what} from {where} failed: the credential was refused or could not get a token "
            f"({type(exc).__name__}); sign in (az login) or check the credential",
            status_code=status,
            code=code,
            backend=_BACKEND,
        )
    error = error_from_azure_core(exc, backend=_BACKEND, service="the Azure ML workspace")
    error.message = f"reading {what} from {where}: " + error.message
    if isinstance(error, AuthenticationError):
        error.message += " (your identity needs a role on the workspace that may read endpoints and keys)"
    return error
