"""`redqctl watch`: a table of agents' progress, refreshed in place until Ctrl-C.

Each refresh reads, per agent, GET /v1/agents/{name} (counters, losses, updates/s), the
newest episodes (last returns) and any new evaluation rows. On a terminal the table is
redrawn over the previous one (cursor movement, no screen clearing, so the last frame
stays when it stops); otherwise each frame is printed after the last, for logs.
"""

import shutil
import sys
import time

from .client import DaemonUnreachable, RedqdError

RECENT = 10          # explore returns averaged in the "ret(10)" column

# (header, width, left-aligned) after the name column, which takes what it needs. "critic"
# and "actor" are the newest losses; "eval" the newest evaluation's mean return, "eval@"
# the env_steps it was recorded at.
COLUMNS = [
    ("status", 7, True), ("mode", 6, True), ("env_steps", 10, False),
    ("steps/s", 8, False), ("updates", 10, False), ("upd/s", 7, False),
    ("pending", 8, False), ("critic", 9, False), ("actor", 9, False), ("alpha", 8, False),
    ("episodes", 8, False), ("last_ret", 9, False), ("ret(10)", 9, False),
    ("eval", 9, False), ("eval@", 9, False),
]


def watch(client, names, interval=2.0, count=None, out=None):
    """Draws frames every `interval` seconds; `count` frames, or until Ctrl-C (exit 0).
    The first frame raises when the daemon cannot be reached; later ones say so."""
    out = out or sys.stdout
    tty = out.isatty()
    client.retries = 0                  # a frame reports a failure; the next one retries
    agents = {}                         # name -> _Agent
    drawn = frames = 0
    try:
        while True:
            lines = frame(client, names, agents, interval, first=frames == 0)
            width = shutil.get_terminal_size().columns if tty else None
            if tty and drawn:
                out.write(f"\x1b[{drawn}F")          # up to the previous frame's first line
            for line in lines:
                out.write((line[:width] + "\x1b[K" if tty else line) + "\n")
            out.write("\x1b[J" if tty else "\n")    # clear what the old frame left below
            out.flush()
            drawn, frames = len(lines), frames + 1
            if count is not None and frames >= count:
                return 0
            time.sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
        return 0


def frame(client, names, agents, interval, first=False):
    """The lines of one frame."""
    now = time.time()
    header = (f"redqd at {client.base_url}  {time.strftime('%H:%M:%S', time.localtime(now))}"
              f"  (every {interval:g} s; Ctrl-C stops)")
    try:
        listed = names or [a["name"] for a in client.list_agents()["agents"]]
    except (DaemonUnreachable, ConnectionError, RedqdError) as exc:
        if first:
            raise
        return [header, f"cannot read the agents: {exc}"]
    rows = []
    for name in listed:
        agent = agents.setdefault(name, _Agent(name))
        try:
            rows.append(agent.row(client, now))
        except RedqdError as exc:
            rows.append([name, "not found" if exc.status == 404 else f"error {exc.status}"])
        except (DaemonUnreachable, ConnectionError) as exc:
            if first:
                raise
            return [header, f"cannot reach the daemon: {exc}"]
    if not listed:
        return [header, "no agents yet"]
    name_width = max(len("agent"), *(len(r[0]) for r in rows))
    return [header, "", _line("agent", [c[0] for c in COLUMNS], name_width)] + \
        [_line(r[0], r[1:], name_width) for r in rows]


def _line(name, values, name_width):
    cells = [name.ljust(name_width)]
    for value, (_, width, left) in zip(values, COLUMNS):
        cells.append(" " + (value.ljust(width) if left else value.rjust(width)))
    return "".join(cells).rstrip()


class _Agent:
    """What the watch remembers of one agent between frames."""

    def __init__(self, name):
        self.name = name
        self.last = None              # (time, env_steps, updates) at the previous frame
        self.eval_since = None        # newest evaluation row seen
        self.eval = None              # and its contents

    def row(self, client, now):
        info = client.get_agent(self.name)
        st = info["state"]
        # Rates over the time between two frames; before the second frame, the daemon's
        # recent training rate (background training only: sync updates are not in it).
        steps_rate, updates_rate = None, st.get("updates_per_s") or None
        if self.last is not None and now > self.last[0]:
            dt = now - self.last[0]
            steps_rate = (st["env_steps"] - self.last[1]) / dt
            updates_rate = (st["updates"] - self.last[2]) / dt
        self.last = (now, st["env_steps"], st["updates"])

        episodes = client.list_episodes(self.name, limit=4 * RECENT)["episodes"]
        ended = [e["return"] for e in episodes
                 if e.get("mode") == "explore" and e.get("ended_at") and not e.get("abandoned")]
        recent = ended[:RECENT]                       # newest first
        while True:                                   # new evaluation rows, if any
            rows = client.evaluations(self.name, since=self.eval_since, limit=1000)["rows"]
            if rows:
                self.eval, self.eval_since = rows[-1], rows[-1]["row"]
            if len(rows) < 1000:
                break
        return [self.name, st.get("status", "ok"), st.get("training", ""),
                str(st["env_steps"]), num(steps_rate, ".1f"), str(st["updates"]),
                num(updates_rate, ".0f"), num(st.get("pending_updates"), ".0f"),
                num(st.get("critic_loss")), num(st.get("actor_loss")), num(st.get("alpha")),
                str(st.get("episodes", "")), num(st.get("last_return"), ".1f"),
                num(sum(recent) / len(recent) if recent else None, ".1f"),
                num(self.eval and self.eval["mean"], ".1f"),
                str(self.eval["env_steps"]) if self.eval else "-"]


def num(value, spec=".4g"):
    return "-" if value is None else format(value, spec)
