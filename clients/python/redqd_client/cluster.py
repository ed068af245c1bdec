"""Several redqd nodes behind HAProxy (docs/operations.md "Running several nodes"):
the router's placement map, and moving an agent from one node to another.

    from redqd_client import Client
    from redqd_client.cluster import Router, move_agent, map_entries

    router = Client("http://router:8480")                # HAProxy's frontend
    print(map_entries(router.list_agents(scope="cluster"), node="b"))
    move_agent(router, "walker", "c", Router("/run/haproxy/redqd.sock",
                                             "/etc/haproxy/redqd.map"))

The router picks a node by the agent's name: from the placement map (map_str in
deploy/haproxy/redqd.cfg), else by consistent hashing of the name. The map is changed at
run time through HAProxy's runtime API (the `stats socket` of its config), with no
reload; Router also rewrites the map file, so that a reload or restart keeps the change.
"""

import os
import socket
import tempfile

from .client import Client, RedqdError

__all__ = ["Router", "RouterError", "ClusterError", "map_entries", "move_agent"]


class RouterError(Exception):
    """HAProxy's runtime API refused a command or could not be reached."""


class ClusterError(Exception):
    """A move that could not be done (what was done is undone first, the message says),
    or a map that cannot be made from the nodes that answered."""


class Router:
    """HAProxy's runtime API at `address` ("/path/to/socket", "unix:/path", or
    "host:port"), and the placement map `map_path` as its config names it (also the file
    rewritten after each change, when `write_file` and it is writable)."""

    def __init__(self, address, map_path, write_file=True, timeout=5.0):
        self.address = address
        self.map_path = map_path
        self.write_file = write_file
        self.timeout = timeout

    def command(self, line):
        """Sends one command, returns HAProxy's answer (text)."""
        addr = self.address[5:] if self.address.startswith("unix:") else self.address
        if "/" in addr:
            family, target = socket.AF_UNIX, addr
        else:
            host, _, port = addr.rpartition(":")
            family, target = socket.AF_INET, (host or "127.0.0.1", int(port))
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(target)
                s.sendall(line.encode() + b"\n")
                chunks = []
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    chunks.append(b)
        except OSError as exc:
            raise RouterError(f"HAProxy's runtime API at {self.address}: {exc}") from None
        return b"".join(chunks).decode("utf-8", "replace")

    def show_map(self):
        """{agent name: node} as the running router has it."""
        out = {}
        for line in self.command(f"show map {self.map_path}").splitlines():
            parts = line.split()
            if len(parts) == 3:             # "<ref> <key> <value>"
                out[parts[1]] = parts[2]
        return out

    def set_entry(self, name, node):
        """Points `name` at `node`: `set map` (or `add map` when it is not there yet), in
        one step, so no request in between finds it missing; then the file."""
        answer = self.command(f"set map {self.map_path} {name} {node}").strip()
        if answer and "not found" in answer.lower():
            answer = self.command(f"add map {self.map_path} {name} {node}").strip()
        if answer:
            raise RouterError(f"HAProxy refused the map entry {name} -> {node}: {answer}")
        if self.write_file:
            self._write(name, node)

    def _write(self, name, node):
        """The map file with name's line replaced or added (atomically: a new file renamed
        over it). Missing or unwritable: left alone (the running router has the entry)."""
        path = self.map_path
        if not os.path.exists(path) or not os.access(os.path.dirname(path) or ".", os.W_OK):
            return
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        out, done = [], False
        for line in lines:
            key = line.split("#", 1)[0].split()
            if key and key[0] == name:
                if not done:
                    out.append(f"{name} {node}")
                done = True
                continue
            out.append(line)
        if not done:
            out.append(f"{name} {node}")
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".redqd-map-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(out) + "\n")
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)


def map_entries(listing, node=None):
    """The placement map's lines ("name node") for the agents of a cluster-wide list
    (Client.list_agents(scope="cluster")), only node's when given. An agent that is
    moving is mapped to where it is going, if it is there already. Raises ClusterError when
    a node did not answer: a map written from part of the cluster would drop the entries
    of that node's agents."""
    down = [n["name"] for n in listing.get("nodes", []) if n.get("status") != "ok"]
    if down:
        raise ClusterError(f"nodes {', '.join(down)} did not answer; a map of the others "
                        f"would lose the entries of their agents")
    where = {}
    for a in listing["agents"]:
        here = a["node"]
        if a.get("moving_to") and any(b["name"] == a["name"] and b["node"] == a["moving_to"]
                                      for b in listing["agents"]):
            continue                        # the copy it is moving to is listed as well
        where[a["name"]] = here
    return [f"{name} {n}" for name, n in sorted(where.items()) if node is None or n == node]


def _node_urls(listing):
    return {n["name"]: n for n in listing.get("nodes", [])}


def move_agent(router_client, name, to, router=None, log=None):
    """Moves agent `name` to node `to` (docs/operations.md "Moving an agent"):

    1. POST .../move on its node: from now on it refuses writes (503, Retry-After), so
       nothing acknowledged can be left behind; it trains no more.
    2. GET .../move: the move file (learner, buffer, owed updates, batch ids, history).
    3. PUT .../checkpoint on `to` with it.
    4. The router's map entry points at `to` (when `router`, a Router, is given).
    5. DELETE on the old node.
    Clients that keep posting get 503 with Retry-After until step 4, then reach `to`.
    A step that fails undoes the ones before it (the copy on `to` deleted, the move
    cancelled) and raises ClusterError; run it again. Running it again after it stopped
    half way finishes the move. Returns a summary dict.

    router_client is a Client of the router (or of any node): nodes are found through
    its cluster-wide list; each must be in --peers with its URL.
    """
    log = log or (lambda text: None)
    listing = router_client.list_agents(scope="cluster")
    nodes = _node_urls(listing)
    if to not in nodes:
        raise ClusterError(f"no node {to!r} in the cluster (nodes: {', '.join(sorted(nodes))})")
    if nodes[to].get("status") != "ok" or not nodes[to].get("url"):
        raise ClusterError(f"node {to!r} cannot be reached ({nodes[to].get('detail') or 'no URL in --peers'})")
    copies = [a for a in listing["agents"] if a["name"] == name]
    sources = [a for a in copies if a["node"] != to]
    arrived = any(a["node"] == to for a in copies)
    if not sources:
        if not arrived:
            down = [n for n, e in nodes.items() if e.get("status") != "ok"]
            raise ClusterError(f"no agent {name!r} on the nodes that answered"
                            + (f" (not answering: {', '.join(down)})" if down else ""))
        if router:
            router.set_entry(name, to)
        log(f"{name} is on {to} already")
        return {"name": name, "from": None, "to": to, "bytes": 0}
    src = sources[0]["node"]
    if not nodes[src].get("url"):
        raise ClusterError(f"node {src!r} has no URL in --peers")
    token, timeout = router_client.token, router_client.timeout
    old = Client(nodes[src]["url"], token=token, timeout=timeout)
    new = Client(nodes[to]["url"], token=token, timeout=timeout)
    try:
        state = old.start_move(name, to)["state"]
        log(f"{name} on {src}: moving (env_steps {state['env_steps']}, "
            f"updates {state['updates']}); it takes no writes until the move is done")
        data = old.move_file(name)
        log(f"{name}: move file of {len(data)} bytes")
        if not arrived:
            try:
                new.import_checkpoint(name, data)
            except RedqdError as exc:
                old.cancel_move(name)
                raise ClusterError(f"{to} refused {name}: {exc}; the move is cancelled, {name} "
                                f"takes writes on {src} again") from None
        else:                               # a move stopped half way: is that copy ours?
            there = new.get_agent(name)["state"]
            if (there["env_steps"], there["updates"]) != (state["env_steps"], state["updates"]):
                raise ClusterError(f"{to} holds another agent {name!r} (env_steps "
                                f"{there['env_steps']}, not {state['env_steps']}): delete "
                                f"one of them first; {name} on {src} is still moving "
                                f"(cancel with DELETE .../move)")
        log(f"{name}: created on {to}")
        if router:
            try:
                router.set_entry(name, to)
            except RouterError as exc:
                new.delete_agent(name)
                old.cancel_move(name)
                raise ClusterError(f"{exc}; the copy on {to} is deleted and the move cancelled, "
                                f"{name} takes writes on {src} again") from None
            log(f"{name}: the router sends it to {to}")
        old.delete_agent(name)
        log(f"{name}: deleted on {src}; moved")
        return {"name": name, "from": src, "to": to, "bytes": len(data),
                "env_steps": state["env_steps"], "updates": state["updates"]}
    finally:
        old.close()
        new.close()
