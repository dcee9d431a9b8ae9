"""The HTTP task's runner process (stdlib only): send one request, write the status, response
headers and the (capped) body to stdout, and exit 0 only if the success conditions hold."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from worker.task_types.outputs import defang, emit_output

SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key")
READ_LIMIT = 16 << 20  # bytes read for the body check; the log gets max_body_bytes of them
EXIT_STATUS, EXIT_BODY, EXIT_TRANSPORT = 1, 2, 3


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def code_matches(code: int, accepted: list[Any]) -> bool:
    """``200`` matches itself, ``"2xx"`` a whole class."""
    for c in accepted:
        if isinstance(c, int) and c == code:
            return True
        if isinstance(c, str):
            if c.endswith("xx") and str(code)[0] == c[0]:
                return True
            if c.isdigit() and int(c) == code:
                return True
    return False


def encode_body(body: Any, headers: dict[str, str]) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, dict | list):
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        return json.dumps(body).encode()
    return str(body).encode()


def run(req: Mapping[str, Any]) -> int:
    headers = {str(k): str(v) for k, v in (req.get("headers") or {}).items()}
    data = encode_body(req.get("body"), headers)
    method, url = req["method"], req["url"]
    shown = ", ".join(
        f"{k}: ***" if k.lower() in SECRET_HEADERS else f"{k}: {v}" for k, v in headers.items()
    )
    print(f"> {method} {url}" + (f" [{shown}]" if shown else ""), flush=True)
    handlers = [] if req.get("follow_redirects", True) else [_NoRedirect()]
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        resp = opener.open(request, timeout=float(req["timeout"]))
    except urllib.error.HTTPError as err:
        resp = err  # a status outside 2xx still has a response to judge and show
    except (TimeoutError, urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"< request failed: {type(exc).__name__}: {reason}", flush=True)
        return EXIT_TRANSPORT
    with resp:
        code = int(resp.status if hasattr(resp, "status") else resp.getcode())
        print(f"< {code} {getattr(resp, 'reason', '')}")
        for k, v in resp.headers.items():
            print(f"< {k}: {v}")
        try:
            body = resp.read(READ_LIMIT)
        except (TimeoutError, OSError) as exc:
            print(f"< reading the body failed: {exc}", flush=True)
            return EXIT_TRANSPORT
    cap = int(req.get("max_body_bytes", 65536))
    text = body.decode("utf-8", "replace")
    print("")
    print(defang(body[:cap].decode("utf-8", "replace")))
    if len(body) > cap:
        print(f"[dagkeeper] response body truncated: {cap} of {len(body)}+ bytes shown")
    emit_output("status_code", code)
    if not code_matches(code, list(req.get("success_codes") or ["2xx"])):
        print(f"[dagkeeper] status {code} is not a success code {req.get('success_codes')}")
        return EXIT_STATUS
    expected = req.get("expect_body_contains")
    if expected and expected not in text:
        print(f"[dagkeeper] the response body does not contain {expected!r}")
        return EXIT_BODY
    return 0


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as fh:
        req = json.load(fh)
    return run(req)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
