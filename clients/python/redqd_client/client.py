"""The HTTP client: one method per endpoint of redqd's API (docs/api.md), standard library
only.

    from redqd_client import Client, RedqdError

    c = Client("http://127.0.0.1:8470")                    # token="..." when the daemon has one
    c.put_agent("pendulum", obs_dim=3, action_low=[-2.0], action_high=[2.0],
                config={"training": "sync"})              # created, or the same one found
    action = c.act("pendulum", obs)                        # one observation -> one action
    c.post_transitions("pendulum", [{"obs": obs, "action": action, "reward": r,
                                     "next_obs": next_obs, "terminated": False,
                                     "truncated": False}])

The methods return what the API answers: decoded JSON (a dict) for JSON answers, None
for 204, str for text (metrics, CSV) and bytes for files (checkpoints, the policy).
Observations and actions may be lists, tuples or anything with .tolist() (numpy
arrays); NaN and infinities are refused before anything is sent.

Errors. A non-2xx answer raises RedqdError carrying the problem+json document's status,
code, detail and title. A daemon that cannot be reached raises DaemonUnreachable (a
ConnectionError) at once, naming the URL, unless this client has reached it before (then
it is taken for a restart and retried as below). A connection lost mid-request raises
the usual ConnectionError; timeouts raise TimeoutError.

Retries (bounded by `retries`, sleeping at most `max_retry_wait` seconds at a time):
- 429 `busy` (back-pressure) is retried for any request after its Retry-After. The
  contract says a 429 stores nothing; only transitions posts and episode steps get it.
- 503 with Retry-After is retried for any request after that many seconds: the daemon
  (or a cluster's router) says that nothing was done and that the same request will
  succeed later -- an agent moving to another node, one still loading, a node down.
- A failed connect, once the daemon has answered this client before, is retried for any
  request: nothing was sent.
- A connection lost mid-request, or 503 `unavailable` (a daemon shutting down or
  restarting), is retried only where sending the request twice is harmless: GETs, PUT
  of an agent, PATCH, act, and transitions posts that carry a batch_id.
  post_transitions() generates one for every post by default: the daemon stores a
  batch_id's rows once, so when a post fails with no answer (the daemon crashed after
  storing it, say) the retry cannot add them twice. Episode steps, train, evaluation,
  checkpoint and POST-create calls are never resent after a lost connection, since
  their outcome is unknown; the error is raised.

A Client keeps one keep-alive connection and is not thread-safe: use one per thread.
"""

import email.utils
import http.client
import json
import logging
import os
import select
import socket
import time
import urllib.parse
import uuid

__all__ = ["Client", "RedqdError", "DaemonUnreachable", "new_batch_id", "DEFAULT_URL",
           "default_url", "default_token"]

DEFAULT_URL = "http://127.0.0.1:8470"
USER_AGENT = "redqd-python-client/2"

log = logging.getLogger("redqd_client")


class RedqdError(Exception):
    """A non-2xx answer from redqd.

    status       HTTP status (400, 404, 409, 429, ...)
    code         the problem's code ("invalid_argument", "not_found", "busy", ...), or None
                 when the body was not a problem document (a proxy's error page, say)
    detail       what was wrong, naming the field ("obs has 4 values; agent 'p' expects 3")
    title        the problem's title ("Bad Request")
    problem      the whole decoded problem document ({} when there was none)
    retry_after  seconds from a Retry-After header, or None
    """

    def __init__(self, status, code, detail, title, problem=None, retry_after=None):
        super().__init__(status, code, detail, title)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.problem = problem if problem is not None else {}
        self.retry_after = retry_after

    def __str__(self):
        what = self.code or self.title or "error"
        return f"{self.status} {what}: {self.detail}" if self.detail else f"{self.status} {what}"

    @classmethod
    def from_response(cls, status, headers, body):
        """Builds the error from an answer's status, headers and raw body."""
        retry_after = _parse_retry_after(headers.get("Retry-After"))
        try:
            problem = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            problem = None
        if isinstance(problem, dict):
            return cls(status, problem.get("code"), problem.get("detail"),
                       problem.get("title"), problem, retry_after)
        text = body.decode("utf-8", "replace").strip()
        return cls(status, None, text[:500] or None, _reason(status), None, retry_after)


class DaemonUnreachable(ConnectionError):
    """No connection to the daemon could be made (refused, no route, unknown host, a TLS
    failure, or no answer to the connect within connect_timeout).

    url     the daemon's base URL as the client was given it
    reason  what the connect failed with (str)
    """

    def __init__(self, url, reason):
        super().__init__(f"cannot connect to redqd at {url}: {reason}. Is the daemon "
                         f"running? Start one with `make run` (or `redqd --port N`), or "
                         f"point the client at it with --url or REDQD_URL")
        self.url = url
        self.reason = reason


def default_url():
    """$REDQD_URL, or http://127.0.0.1:8470 (what `make run` listens on)."""
    return os.environ.get("REDQD_URL") or DEFAULT_URL


def default_token():
    """$REDQD_TOKEN, or None."""
    return os.environ.get("REDQD_TOKEN") or None


def new_batch_id():
    """A fresh batch_id for a transitions post (35 characters of [A-Za-z0-9_.:-])."""
    return "py-" + uuid.uuid4().hex


class Client:
    """One redqd daemon at `base_url` (a path prefix such as http://host/redqd is kept).

    base_url        None: default_url() ($REDQD_URL or http://127.0.0.1:8470)
    token           sent as "Authorization: Bearer <token>" when set
    timeout         seconds to wait for an answer; in `sync` training mode a transitions
                    post waits for its updates, so allow for them
    connect_timeout seconds to wait for a connection (at most timeout)
    retries         how many times a retryable failure is retried (module docstring); 0: never
    max_retry_wait  the longest single sleep between two tries, in seconds
    """

    def __init__(self, base_url=DEFAULT_URL, token=None, timeout=60, retries=10,
                 max_retry_wait=30.0, connect_timeout=10.0):
        if base_url is None:
            base_url = default_url()
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be http://host[:port][/prefix], not {base_url!r}")
        self.base_url = base_url
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.connect_timeout = connect_timeout
        self._reached = False               # has the daemon ever answered this client?
        self._scheme = url.scheme
        self._host = url.hostname
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        self._conn = None
        self._sleep = time.sleep            # tests replace it

    def close(self):
        """Closes the kept-alive connection (the next call opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- service ----------------------------------------------------------------------

    def health(self, scope=None):
        """GET /v1/health: {"status", "version", "uptime_s", "agents", "node"} (needs no
        token). scope="cluster" adds "nodes": every node of the cluster and whether it
        answered."""
        return self._json("GET", "/v1/health", query={"scope": scope})

    def metrics(self):
        """GET /metrics: the Prometheus text exposition, as str."""
        return self._text("GET", "/metrics")

    def openapi(self):
        """GET /v1/openapi.json: the OpenAPI 3 description of the API."""
        return self._json("GET", "/v1/openapi.json")

    # ---- agents -----------------------------------------------------------------------

    def create_agent(self, name, obs_dim, action_low, action_high, config=None):
        """POST /v1/agents; 409 `already_exists` if the name is taken. Returns the agent."""
        body = {"name": name, "obs_dim": obs_dim,
                "action_low": action_low, "action_high": action_high}
        if config is not None:
            body["config"] = config
        return self._json("POST", "/v1/agents", body=body)

    def put_agent(self, name, obs_dim, action_low, action_high, config=None):
        """PUT /v1/agents/{name}: creates the agent, or finds the one of that name with the
        same obs_dim, action box and config (settings left out count as their defaults)
        and answers it unchanged. Another one of that name is 409 `already_exists`, whose
        detail names the first difference. Safe to send twice. Returns the agent."""
        return self._put_agent(name, obs_dim, action_low, action_high, config)[1]

    def _put_agent(self, name, obs_dim, action_low, action_high, config):
        """put_agent(), answering (created: bool, agent)."""
        body = {"obs_dim": obs_dim, "action_low": _plain(action_low),
                "action_high": _plain(action_high)}
        if config is not None:
            body["config"] = config
        status, _, data = self._request("PUT", _agent_path(name), body=_encode_json(body),
                                        content_type="application/json", retry_safe=True)
        return status == 201, _decode_json(data)

    def list_agents(self, scope=None):
        """GET /v1/agents: {"agents": [{name, obs_dim, act_dim, env_steps, updates, training,
        status, node, moving_to}]}. On a node of a cluster the default scope is "cluster":
        every node's agents, with "nodes" saying which nodes answered; scope="node" lists
        the node's own."""
        return self._json("GET", "/v1/agents", query={"scope": scope})

    def get_agent(self, name):
        """GET /v1/agents/{name}: name, dims, bounds, the effective config and `state`."""
        return self._json("GET", _agent_path(name))

    def patch_agent(self, name, **settings):
        """PATCH /v1/agents/{name}, e.g. patch_agent("p", training="paused"). Returns the agent."""
        return self._json("PATCH", _agent_path(name), body=settings, retry_safe=True)

    def delete_agent(self, name):
        """DELETE /v1/agents/{name}: the agent and all its data are gone."""
        return self._json("DELETE", _agent_path(name))

    # ---- acting -----------------------------------------------------------------------

    def act(self, name, obs, mode="explore"):
        """The action for one observation, or a list of actions for a list of them.

        mode is "explore" (sampled; uniform random before start_timesteps) or "eval".
        """
        return self.act_full(name, obs, mode)["action"]

    def act_full(self, name, obs, mode="explore"):
        """POST .../act and return the whole answer: {"action", "policy_version"}."""
        return self._json("POST", _agent_path(name, "act"),
                          body={"obs": _plain(obs), "mode": mode}, retry_safe=True)

    # ---- learning from transitions ----------------------------------------------------

    def post_transitions(self, name, transitions, batch_id=None, timeout=None):
        """POST .../transitions: {"accepted", "env_steps", "pending_updates"}.

        transitions: dicts with obs, action (as executed, environment scale), reward,
        next_obs, terminated, truncated and optionally env_id (parallel environments).
        batch_id: None generates one (new_batch_id()), which makes the post safe to
        retry; pass a string of your own to make retries safe across processes too, or
        False to send none (then a connection error is never retried).
        timeout overrides the client's for this call (a large sync-mode post waits for
        its updates).
        """
        body = {"transitions": list(transitions)}
        if batch_id is None:
            batch_id = new_batch_id()
        if batch_id is not False:
            body["batch_id"] = batch_id
        return self._json("POST", _agent_path(name, "transitions"), body=body,
                          retry_safe="batch_id" in body, timeout=timeout)

    # ---- episodes ---------------------------------------------------------------------

    def start_episode(self, name, obs, mode="explore"):
        """POST .../episodes: 201 {"episode_id", "action"}. An eval episode trains nothing."""
        return self._json("POST", _agent_path(name, "episodes"),
                          body={"obs": _plain(obs), "mode": mode})

    def step_episode(self, name, episode_id, reward, obs, terminated, truncated):
        """POST .../episodes/{id}/step with the reward and observation that followed the
        last action. Answers {"action": [...]}, or {"done": true, "return", "length"}
        once terminated or truncated. 429 `busy` is retried like transitions posts."""
        body = {"reward": float(reward), "obs": _plain(obs),
                "terminated": bool(terminated), "truncated": bool(truncated)}
        return self._json("POST", _agent_path(name, "episodes", episode_id, "step"), body=body)

    def abandon_episode(self, name, episode_id):
        """DELETE .../episodes/{id}: abandon an open episode (409 if it has ended)."""
        return self._json("DELETE", _agent_path(name, "episodes", episode_id))

    def list_episodes(self, name, limit=None):
        """GET .../episodes: {"episodes": [{id, return, length, mode, ended_at}]}, newest first."""
        return self._json("GET", _agent_path(name, "episodes"), query={"limit": limit})

    # ---- training and statistics ------------------------------------------------------

    def train(self, name, updates, timeout=None):
        """POST .../train: run `updates` updates now; {"updates": total, "stats": {...}}.

        Works in every training mode; 409 `conflict` with fewer than batch_size rows.
        timeout overrides the client's for this call."""
        return self._json("POST", _agent_path(name, "train"), body={"updates": updates},
                          timeout=timeout)

    def stats(self, name, since=None, limit=None, format="json"):
        """GET .../stats: rows with row > since, oldest first, at most limit.

        format="json" returns {"rows": [...]}; format="csv" returns the CSV text."""
        return self._rows(name, "stats", since, limit, format)

    def iter_stats(self, name, since=None, page_size=1000):
        """Every stats row after `since`, paging forward until the newest."""
        return self._iter_rows(self.stats, name, since, page_size)

    def _rows(self, name, what, since, limit, format):
        query = {"since": since, "limit": limit, "format": format}
        if format == "csv":
            return self._text("GET", _agent_path(name, what), query=query)
        return self._json("GET", _agent_path(name, what), query=query)

    @staticmethod
    def _iter_rows(fetch, name, since, page_size):
        while True:
            rows = fetch(name, since=since, limit=page_size)["rows"]
            yield from rows
            if len(rows) < page_size:
                return
            since = rows[-1]["row"]

    # ---- evaluations ------------------------------------------------------------------

    def post_evaluation(self, name, returns, lengths=None):
        """POST .../evaluations: records the returns (and lengths) of eval episodes against
        the agent's env_steps, updates and policy_version now. Answers the row: {"row",
        "env_steps", "updates", "policy_version", "time", "n", "mean", "std", "min",
        "max", "mean_length"}. Not resent after a lost connection (it could count twice)."""
        body = {"returns": [float(r) for r in _plain(returns)]}
        if lengths is not None:
            body["lengths"] = [int(n) for n in _plain(lengths)]
        return self._json("POST", _agent_path(name, "evaluations"), body=body)

    def evaluations(self, name, since=None, limit=None, format="json"):
        """GET .../evaluations: rows with row > since, oldest first, at most limit, paged
        like stats. format="json" returns {"rows": [...]}; "csv" returns the CSV text."""
        return self._rows(name, "evaluations", since, limit, format)

    def iter_evaluations(self, name, since=None, page_size=1000):
        """Every evaluation row after `since`, paging forward until the newest."""
        return self._iter_rows(self.evaluations, name, since, page_size)

    # ---- checkpoints ------------------------------------------------------------------

    def create_checkpoint(self, name):
        """POST .../checkpoints: 201 {"id", "updates", "env_steps", "created_at", "bytes"}."""
        return self._json("POST", _agent_path(name, "checkpoints"), body={})

    def list_checkpoints(self, name):
        """GET .../checkpoints: {"checkpoints": [...]}."""
        return self._json("GET", _agent_path(name, "checkpoints"))

    def download_checkpoint(self, name, checkpoint_id, with_buffer=False):
        """GET .../checkpoints/{id}: the checkpoint file as bytes; with_buffer adds the
        replay buffer so that import_checkpoint() elsewhere continues with the data."""
        query = {"with_buffer": "true"} if with_buffer else None
        return self._bytes("GET", _agent_path(name, "checkpoints", checkpoint_id), query=query)

    def delete_checkpoint(self, name, checkpoint_id):
        """DELETE .../checkpoints/{id}."""
        return self._json("DELETE", _agent_path(name, "checkpoints", checkpoint_id))

    def restore(self, name, checkpoint_id):
        """POST .../restore: the learner goes back to that checkpoint. Returns the agent."""
        return self._json("POST", _agent_path(name, "restore"),
                          body={"checkpoint": checkpoint_id})

    def import_checkpoint(self, name, data):
        """PUT .../checkpoint with a downloaded checkpoint file's bytes, or a move file's:
        201 and the new agent (409 `already_exists` if the name is taken)."""
        _, _, body = self._request("PUT", _agent_path(name, "checkpoint"), body=bytes(data),
                                   content_type="application/octet-stream")
        return _decode_json(body)

    # ---- moving to another node (redqd_client.cluster.move_agent does the whole move) --

    def start_move(self, name, to):
        """POST .../move: the agent is moving to node `to`: it takes no writes (503 with
        Retry-After) and trains no more until it is deleted here or the move cancelled.
        Returns the agent (state.moving)."""
        return self._json("POST", _agent_path(name, "move"), body={"to": to}, retry_safe=True)

    def move_file(self, name):
        """GET .../move: the move file of a moving agent (bytes), for import_checkpoint()
        on the target node."""
        return self._bytes("GET", _agent_path(name, "move"))

    def cancel_move(self, name):
        """DELETE .../move: the agent takes writes and trains again. Returns the agent."""
        return self._json("DELETE", _agent_path(name, "move"), retry_safe=True)

    # ---- policy -----------------------------------------------------------------------

    def policy(self, name):
        """GET .../policy: the actor as safetensors bytes (see load_policy_safetensors)."""
        return self._bytes("GET", _agent_path(name, "policy"), query={"format": "safetensors"})

    def policy_if_changed(self, name, policy_version):
        """The policy file, or None if the agent's policy_version is still the one given
        (a conditional GET with If-None-Match; the daemon answers 304 without a body)."""
        status, _, body = self._request(
            "GET", _agent_path(name, "policy"), query={"format": "safetensors"},
            headers={"If-None-Match": f'"{policy_version}"'})
        return None if status == 304 else body

    # ---- transport --------------------------------------------------------------------

    def _json(self, method, path, body=None, query=None, retry_safe=None, timeout=None):
        payload = None if body is None else _encode_json(body)
        _, _, data = self._request(method, path, query=query, body=payload,
                                   content_type="application/json", retry_safe=retry_safe,
                                   timeout=timeout)
        return _decode_json(data)

    def _text(self, method, path, query=None):
        _, headers, data = self._request(method, path, query=query)
        return data.decode(headers.get_content_charset() or "utf-8")

    def _bytes(self, method, path, query=None):
        return self._request(method, path, query=query)[2]

    def _request(self, method, path, query=None, body=None, content_type=None, headers=None,
                 retry_safe=None, timeout=None):
        """Sends one request, retrying as the module docstring says.

        Returns (status, headers, body bytes) for a 2xx or 304 answer; raises RedqdError
        for any other, DaemonUnreachable when no connection can be made, and OSError
        when one is lost. retry_safe=None means "only if it is a GET"."""
        url = self._prefix + path
        query = {k: v for k, v in (query or {}).items() if v is not None}
        if query:
            url += "?" + urllib.parse.urlencode(query)
        hdrs = {"User-Agent": USER_AGENT}
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        if body is not None:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        if retry_safe is None:
            retry_safe = method == "GET"

        attempt = 0
        while True:
            try:
                status, resp_headers, data = self._send(method, url, body, hdrs, timeout)
            except DaemonUnreachable as exc:
                # Never reached: a wrong URL or no daemon, and waiting would only hide it.
                # Reached before: a restart; nothing was sent, so any request may retry.
                if not self._reached or attempt >= self.retries:
                    raise
                delay = _backoff(attempt)
                log.debug("%s %s: %s; retrying in %.2fs", method, url, exc.reason, delay)
            except ConnectionError as exc:
                if not retry_safe or attempt >= self.retries:
                    raise
                delay = _backoff(attempt)
                log.debug("%s %s: %s; retrying in %.2fs", method, url, exc, delay)
            else:
                self._reached = True
                if 200 <= status < 300 or status == 304:
                    return status, resp_headers, data
                err = RedqdError.from_response(status, resp_headers, data)
                retryable = status == 429 or (status == 503 and (
                    retry_safe or err.retry_after is not None))
                if not retryable or attempt >= self.retries:
                    raise err
                delay = err.retry_after if err.retry_after is not None else _backoff(attempt)
                log.debug("%s %s: %s; retrying in %.2fs", method, url, err, delay)
            attempt += 1
            self._sleep(min(delay, self.max_retry_wait))

    def _send(self, method, url, body, headers, timeout):
        """One HTTP exchange on the kept-alive connection (connecting first if needed)."""
        conn = self._connection()
        timeout = self.timeout if timeout is None else timeout
        if conn.sock is None:
            conn.timeout = min(self.connect_timeout, timeout)
            try:
                conn.connect()
            except OSError as exc:      # refused, unreachable, DNS, TLS, connect timeout
                conn.close()
                raise DaemonUnreachable(self.base_url, _describe(exc)) from exc
        conn.timeout = timeout
        conn.sock.settimeout(timeout)
        try:
            conn.request(method, url, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()                # the connection's state is unknown now
            raise
        return resp.status, resp.headers, data

    def _connection(self):
        """The kept-alive connection, replaced first if the daemon has closed it.

        A daemon closes idle connections; sending on one that is already closed would
        fail in a way that cannot be told apart from a crash mid-request, so the socket
        is checked before each use (an idle socket that reads as ready has been closed)."""
        conn = self._conn
        if conn is not None and conn.sock is not None and _socket_closed(conn.sock):
            conn.close()
        if conn is None:
            cls = _HTTPSConnection if self._scheme == "https" else _HTTPConnection
            conn = self._conn = cls(self._host, self._port, timeout=self.timeout)
        return conn


class _HTTPConnection(http.client.HTTPConnection):
    """With TCP_NODELAY: a body past one TCP segment must not wait for a delayed ACK."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _agent_path(name, *rest):
    parts = ["/v1/agents", urllib.parse.quote(str(name), safe="")]
    parts += [urllib.parse.quote(str(p), safe="") for p in rest]
    return "/".join(parts)


def _plain(value):
    """Lists from numpy arrays (anything with .tolist()); other values unchanged."""
    return value.tolist() if hasattr(value, "tolist") else value


def _to_json(obj):
    """json.dumps' fallback: numpy arrays and scalars through .tolist()."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _encode_json(body):
    return json.dumps(body, allow_nan=False, separators=(",", ":"),
                      default=_to_json).encode("utf-8")


def _decode_json(data):
    return json.loads(data.decode("utf-8")) if data else None


def _socket_closed(sock):
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _describe(exc):
    """An OSError as a short phrase: "[Errno 111] Connection refused" or its class."""
    return str(exc) or type(exc).__name__


def _backoff(attempt):
    """Seconds before retry number attempt+1 when the daemon did not say: 0.25, 0.5, 1, ... 5."""
    return min(0.25 * 2 ** attempt, 5.0)


def _parse_retry_after(value):
    """Retry-After as seconds (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _reason(status):
    return http.client.responses.get(status)
