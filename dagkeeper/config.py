"""Where the client finds the API and its token: arguments, then ``DAGKEEPER_URL`` /
``DAGKEEPER_TOKEN``, then the file ``dagkeeper login`` writes (``~/.dagkeeper/client.json``,
mode 0600; ``DAGKEEPER_CLIENT_CONFIG`` names another), then the local default."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dagkeeper.errors import DefinitionError

DEFAULT_URL = "http://127.0.0.1:12345"
ENV_URL, ENV_TOKEN, ENV_CONFIG = "DAGKEEPER_URL", "DAGKEEPER_TOKEN", "DAGKEEPER_CLIENT_CONFIG"


@dataclass(frozen=True)
class ClientConfig:
    url: str
    token: str | None
    # where each value came from: "argument", "environment", a file path or "default"
    url_from: str = "default"
    token_from: str = "none"  # noqa: S105 (a source name, not a secret)


def config_path() -> Path:
    override = os.environ.get(ENV_CONFIG)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".dagkeeper" / "client.json"


def read_file(path: Path | None = None) -> dict[str, str]:
    """The saved url and token; an absent file is empty, a broken one is a one-line error."""
    path = path or config_path()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DefinitionError(f"cannot read the client config {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise DefinitionError(f"the client config {path} is not a JSON object")
    return {k: str(v) for k, v in raw.items() if k in ("url", "token") and v}


def write_file(url: str, token: str, path: Path | None = None) -> Path:
    """Save url and token readable by the user only (directory 0700, file 0600)."""
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token}, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o600)  # O_CREAT's mode is cut by the umask; an old file keeps its mode
    os.replace(tmp, path)
    return path


def resolve(url: str | None = None, token: str | None = None) -> ClientConfig:
    """The url and token to use, each from the first source that has one."""
    saved: dict[str, str] | None = None

    def from_file(key: str) -> str | None:
        nonlocal saved
        if saved is None:
            saved = read_file()
        return saved.get(key)

    sources = [
        ("argument", lambda k: url if k == "url" else token),
        ("environment", lambda k: os.environ.get(ENV_URL if k == "url" else ENV_TOKEN)),
        (str(config_path()), from_file),
    ]
    found: dict[str, tuple[str | None, str]] = {"url": (None, "default"), "token": (None, "none")}
    for key in found:
        for name, get in sources:
            value = get(key)
            if value:
                found[key] = (value, name)
                break
    u, u_from = found["url"]
    t, t_from = found["token"]
    return ClientConfig((u or DEFAULT_URL).rstrip("/"), t, u_from, t_from)
