"""Request and response models of /alert-channels, /alert-groups and one alert's delivery. A
channel's secrets (an SMTP ``password``, a webhook's HMAC ``secret``) are write-only: SecretStr
on the way in, only ``has_password`` / ``has_secret`` on the way out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from api.schemas import Timestamp
from db.models import Alert
from db.models_alerts import AlertChannel

NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$"
ChannelName = Annotated[str, Field(pattern=NAME, description="letters, digits, _ . -")]
EMAIL_RE = r"^[^@\s]+@[^@\s]+$"
Address = Annotated[str, Field(pattern=EMAIL_RE, max_length=320)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class EmailParams(_Strict):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["NONE", "STARTTLS", "SSL"] = "NONE"
    username: str | None = Field(default=None, max_length=255)
    password: SecretStr | None = None
    sender: Address = "dagkeeper@localhost"
    recipients: list[Address] = Field(min_length=1, max_length=100)
    cc: list[Address] = Field(default=[], max_length=100)
    # False: accept a relay's self-signed certificate (STARTTLS/SSL)
    verify_tls: bool = True

    @field_validator("security", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class WebhookParams(_Strict):
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2000)
    format: Literal["JSON", "SLACK"] = "JSON"
    headers: dict[str, str] = Field(default={}, max_length=50)
    # the HMAC-SHA256 key of the X-Dagkeeper-Signature header (none: requests are unsigned)
    secret: SecretStr | None = None

    @field_validator("format", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


SECRET_FIELDS = {"EMAIL": "password", "WEBHOOK": "secret"}


class _ChannelBase(_Strict):
    name: ChannelName
    is_global: bool = False
    description: str = Field(default="", max_length=2000)


class EmailChannelIn(_ChannelBase):
    kind: Literal["EMAIL"]
    params: EmailParams


class WebhookChannelIn(_ChannelBase):
    kind: Literal["WEBHOOK"]
    params: WebhookParams


ChannelIn = Annotated[EmailChannelIn | WebhookChannelIn, Field(discriminator="kind")]


def split_secret(body: EmailChannelIn | WebhookChannelIn) -> tuple[dict[str, Any], str | None]:
    """(the visible params, the secret or None when not given)."""
    key = SECRET_FIELDS[body.kind]
    params = body.params.model_dump(mode="json", exclude={key})
    secret = getattr(body.params, key)
    return params, secret.get_secret_value() if secret is not None else None


class ChannelOut(BaseModel):
    id: int
    name: str
    kind: str
    is_global: bool
    description: str
    params: dict[str, Any]
    has_secret: bool
    groups: list[str]
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def from_row(cls, c: AlertChannel, groups: list[str]) -> ChannelOut:
        return cls(
            id=c.id,
            name=c.name,
            kind=c.kind,
            is_global=c.is_global,
            description=c.description,
            params=dict(c.params or {}),
            has_secret=bool(c.secret_enc),
            groups=groups,
            created_at=c.created_at,
            updated_at=c.updated_at,
        )


class ChannelPage(BaseModel):
    items: list[ChannelOut]
    total: int


class GroupIn(_Strict):
    name: ChannelName
    description: str = Field(default="", max_length=2000)
    channels: list[ChannelName] = Field(default=[], max_length=100, description="channel names")


class GroupOut(BaseModel):
    id: int
    name: str
    description: str
    channels: list[str]
    created_at: Timestamp
    updated_at: Timestamp


class GroupPage(BaseModel):
    items: list[GroupOut]
    total: int


class DeliveryOut(BaseModel):
    """One alert row with its delivery: status, tries, per-channel outcome, last error."""

    id: int
    kind: str
    title: str
    content: dict[str, Any]
    workflow_instance_id: int | None
    alert_group: str | None
    status: str
    tries: int
    next_try_at: Timestamp
    sent_at: Timestamp | None
    last_error: str | None
    deliveries: dict[str, Any]
    created_at: Timestamp

    @classmethod
    def from_row(cls, a: Alert) -> DeliveryOut:
        return cls(
            id=a.id,
            kind=a.kind,
            title=a.title,
            content=a.content or {},
            workflow_instance_id=a.workflow_instance_id,
            alert_group=a.alert_group,
            status=a.status,
            tries=a.tries,
            next_try_at=a.next_try_at,
            sent_at=a.sent_at,
            last_error=a.last_error,
            deliveries=a.deliveries or {},
            created_at=a.created_at,
        )
