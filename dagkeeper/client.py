"""``Client``: the REST API over httpx with typed errors and retries on connection errors within a
deadline; one method per resource the SDK and the CLI use (workflows, runs, instances, logs,
schedules, backfills, cluster, export/import)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from dagkeeper import config
from dagkeeper.errors import ApiError, NotFound, ServerError, Unreachable, from_answer

if TYPE_CHECKING:
    from dagkeeper.runs import Run

API_PREFIX = "/api/v1"
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# sent or not, these never reached the application: safe to send again for any method
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
# the request may have been processed: sent again only when the method is idempotent
MAYBE_SENT = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)
CONTROL = {
    "stop": "stop",
    "pause": "pause",
    "resume": "resume",
    "rerun": "rerun",
    "recover": "recover-failed",
}


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len(API_PREFIX)] if url.endswith(API_PREFIX) else url


class Client:
    """A connection to one dagkeeper API. ``url``/``token`` default to ``DAGKEEPER_URL`` /
    ``DAGKEEPER_TOKEN``, then the file ``dagkeeper login`` wrote. Connection errors are retried
    with backoff until ``retry_deadline_s`` has passed, then raise ``Unreachable``."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retry_deadline_s: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        cfg = config.resolve(url, token)
        self.url, self.token = _base(cfg.url), cfg.token
        self.retry_deadline_s = retry_deadline_s
        headers = {"Accept": "application/json", "User-Agent": "dagkeeper-sdk"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- transport ----------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        deadline = time.monotonic() + self.retry_deadline_s
        delay = 0.1
        while True:
            try:
                r = self._http.request(method, path, **kw)
            except NOT_SENT as exc:
                problem: str = _why(exc)
            except MAYBE_SENT as exc:
                if method not in IDEMPOTENT:
                    raise Unreachable(
                        f"{method} {self.url}{API_PREFIX}{path}: the connection broke ({_why(exc)});"
                        " the request may or may not have been carried out"
                    ) from None
                problem = _why(exc)
            except httpx.HTTPError as exc:
                raise Unreachable(
                    f"cannot reach the dagkeeper API at {self.url}: {_why(exc)}"
                ) from None
            else:
                if not (r.status_code == 503 and method in IDEMPOTENT):
                    return r
                problem = f"HTTP 503: {_message(r)}"
            if time.monotonic() + delay > deadline:
                raise Unreachable(
                    f"cannot reach the dagkeeper API at {self.url} ({problem});"
                    f" gave up after {self.retry_deadline_s:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """One API call; the decoded JSON answer (None for 204), or a typed ``ApiError``."""
        kw: dict[str, Any] = {}
        if json is not None:
            kw["json"] = json
        if params:
            kw["params"] = {k: v for k, v in params.items() if v is not None}
        r = self._send(method.upper(), path, **kw)
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = None
            raise from_answer(r.status_code, body, r.text)
        if r.status_code == 204 or not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            raise ServerError(
                f"{method} {path}: the answer is not JSON", status=r.status_code
            ) from None

    def pages(
        self, path: str, params: Mapping[str, Any] | None = None, limit: int = 100
    ) -> list[Any]:
        """Up to ``limit`` items of a list endpoint, fetched page by page."""
        out: list[Any] = []
        while len(out) < limit:
            window = {"limit": min(limit - len(out), 1000), "offset": len(out)}
            page = self.request("GET", path, params={**(params or {}), **window})
            items = page.get("items") or []
            out.extend(items)
            if not items or len(out) >= int(page.get("total", 0)):
                break
        return out

    # -- identity -----------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """Who the token is (``GET /me``); on a server without it, any authenticated read."""
        try:
            return dict(self.request("GET", "/me"))
        except NotFound:
            self.request("GET", "/workflows", params={"limit": 1})
            return {"name": None, "role": None}

    # -- workflows ----------------------------------------------------------------------------

    def workflows(self, name: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return self.pages("/workflows", {"name": name}, limit)

    def find_workflow(self, name: str) -> dict[str, Any] | None:
        """The live workflow called exactly ``name`` (its summary), or None."""
        for w in self.workflows(name=name):
            if w.get("name") == name:
                return w
        return None

    def workflow_id(self, ref: int | str) -> int:
        """The id of a workflow given by id (or its digits) or by name; NotFound otherwise."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return int(ref)
        found = self.find_workflow(ref)
        if found is None:
            raise NotFound(f"no workflow named {ref!r}", code="not_found")
        return int(found["id"])

    def workflow(self, ref: int | str, version: int | None = None) -> dict[str, Any]:
        wid = self.workflow_id(ref)
        path = f"/workflows/{wid}" + (f"/versions/{version}" if version else "")
        return dict(self.request("GET", path))

    def versions(self, ref: int | str) -> list[dict[str, Any]]:
        return self.pages(f"/workflows/{self.workflow_id(ref)}/versions", limit=10_000)

    def create_workflow(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/workflows", json=dict(spec)))

    def update_workflow(self, workflow_id: int, spec: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("PUT", f"/workflows/{workflow_id}", json=dict(spec)))

    def delete_workflow(self, ref: int | str) -> None:
        self.request("DELETE", f"/workflows/{self.workflow_id(ref)}")

    def set_release_state(self, ref: int | str, state: str) -> dict[str, Any]:
        """ONLINE or OFFLINE: an OFFLINE workflow cannot be run and its schedules do not fire."""
        body = {"release_state": state.upper()}
        return dict(
            self.request("PUT", f"/workflows/{self.workflow_id(ref)}/release-state", json=body)
        )

    def export(self, ref: int | str, version: int | None = None) -> dict[str, Any]:
        params = {"version": version} if version else None
        return dict(
            self.request("GET", f"/workflows/{self.workflow_id(ref)}/export", params=params)
        )

    def import_(
        self, document: Any, on_conflict: str = "fail", rename: str | None = None
    ) -> dict[str, Any]:
        """Import a dagkeeper export document or a DolphinScheduler 3.x export (a list);
        ``on_conflict``: fail (409 on a name clash), rename (to ``rename``) or new_version."""
        params = {"on_conflict": on_conflict, "rename": rename}
        return dict(self.request("POST", "/workflows/import", json=document, params=params))

    # -- runs ---------------------------------------------------------------------------------

    def run(
        self,
        ref: int | str,
        params: Mapping[str, Any] | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
        **options: Any,
    ) -> Run:
        """Start a run (options: priority, worker_group, failure_strategy, start_nodes,
        depend_mode, dry_run); ``wait=True`` returns once it has ended."""
        from dagkeeper.runs import Run

        body = {"params": dict(params or {}), **{k: v for k, v in options.items() if v is not None}}
        accepted = self.request("POST", f"/workflows/{self.workflow_id(ref)}/runs", json=body)
        run = Run(self, int(accepted["instance_id"]))
        return run.wait(timeout=timeout) if wait else run

    def backfill(
        self,
        ref: int | str,
        *,
        start: str | None = None,
        end: str | None = None,
        dates: list[str] | None = None,
        parallelism: int = 1,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start a backfill over [start, end] (the workflow's schedule's fire times) or ``dates``;
        the answer has ``backfill_id`` and the ``instance_ids`` submitted so far."""
        mode = "PARALLEL" if parallelism > 1 else "SERIAL"
        spec: dict[str, Any] = {"mode": mode, "parallelism": parallelism}
        spec.update({k: v for k, v in (("start", start), ("end", end), ("dates", dates)) if v})
        body = {"params": dict(params or {}), "backfill": spec}
        return dict(self.request("POST", f"/workflows/{self.workflow_id(ref)}/runs", json=body))

    def backfill_status(self, backfill_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/backfills/{backfill_id}"))

    # -- instances and task instances ---------------------------------------------------------

    def instances(
        self, workflow: int | str | None = None, state: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        wid = self.workflow_id(workflow) if workflow is not None else None
        return self.pages("/instances", {"workflow_id": wid, "state": state}, limit)

    def instance(self, instance_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/instances/{instance_id}"))

    def control(self, instance_id: int, action: str) -> dict[str, Any]:
        """stop, pause, resume, rerun or recover (failed tasks) an instance."""
        if action not in CONTROL:
            raise ValueError(f"unknown action {action!r} (one of {', '.join(CONTROL)})")
        return dict(self.request("POST", f"/instances/{instance_id}/{CONTROL[action]}"))

    def task_instance(self, task_instance_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/task-instances/{task_instance_id}"))

    def log(self, task_instance_id: int, skip: int = 0, limit: int = 1000) -> dict[str, Any]:
        """One window of a task instance's log: ``{lines, next, complete}``."""
        params = {"skip": skip, "limit": limit}
        return dict(self.request("GET", f"/task-instances/{task_instance_id}/log", params=params))

    def log_lines(self, task_instance_id: int, follow: bool = False) -> Iterator[str]:
        """Every line of a task instance's log; with ``follow`` also the lines still to come,
        until the attempt is over (the server streams them; a broken stream resumes where it
        broke, within the retry deadline)."""
        skip = 0
        if not follow:
            while True:
                window = self.log(task_instance_id, skip=skip)
                yield from window["lines"]
                if window["complete"] or not window["lines"]:
                    return
                skip = int(window["next"])
        path = f"/task-instances/{task_instance_id}/log"
        timeout = httpx.Timeout(30.0, read=None)
        deadline = time.monotonic() + self.retry_deadline_s
        while True:
            params: dict[str, str | int] = {"skip": skip, "follow": "true"}
            try:
                with self._http.stream("GET", path, params=params, timeout=timeout) as r:
                    if r.status_code >= 400:
                        r.read()
                        try:
                            body = r.json()
                        except ValueError:
                            body = None
                        raise from_answer(r.status_code, body, r.text)
                    for line in r.iter_lines():
                        skip += 1
                        deadline = time.monotonic() + self.retry_deadline_s
                        yield line
                return
            except httpx.HTTPError as exc:
                if time.monotonic() > deadline:
                    raise Unreachable(
                        f"the log stream of task instance {task_instance_id} broke: {_why(exc)}"
                    ) from None
                time.sleep(0.5)

    # -- schedules, cluster -------------------------------------------------------------------

    def schedules(self, workflow: int | str | None = None) -> list[dict[str, Any]]:
        wid = self.workflow_id(workflow) if workflow is not None else None
        return self.pages("/schedules", {"workflow_id": wid}, limit=10_000)

    def cluster(self) -> dict[str, Any]:
        return dict(self.request("GET", "/cluster"))


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return r.text.strip()[:200]


__all__ = ["ApiError", "Client"]
