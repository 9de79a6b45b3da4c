"""A throw-away IMAP server for the tests: Debian's dovecot (2.3) on loopback, its own configuration,
certificate, accounts and Maildirs under one temporary directory (like tests/pgserver.py).

Why dovecot and not a fake: the reader's guarantees (keywords set only after a commit, BODY.PEEK
leaving \\Seen alone, UIDs, MOVE, TLS and STARTTLS with certificate validation, LOGIN refused before
STARTTLS) are properties of a real server. Nothing of /etc/dovecot is read (``dovecot -F -c <our
file>``, its own base_dir, free ports), so a system dovecot that the package may have started does
not matter.

Settings that are not obvious:
- It listens on 127.0.0.2, not 127.0.0.1: dovecot counts a connection whose remote address equals its
  local address as secured and then allows LOGIN in plain text even with ``ssl = required``. A client
  connecting to 127.0.0.2 comes from 127.0.0.1 (Linux routes all of 127/8 to lo), so plain LOGIN is
  refused before STARTTLS as on a real server. The certificate names 127.0.0.1, 127.0.0.2 and localhost.
- Run as root (CI), dovecot refuses root for its login processes ("must not be run as root") and uid 0
  for mail ("userdb returned 0 as uid", whatever first_valid_uid says): login runs as dovenull, the
  internal processes and the Maildirs as dovecot (nobody where these users are missing), and
  first_valid_uid is that uid. Run as another user, everything runs as that user.
- One passwd-file per account (``%u`` in its path): dovecot rereads a single passwd-file at most once a
  second, so an account appended to it is not usable at once; a new file is read at first login.
- No delay after a failed login (auth_failure_delay = 0, and the auth penalty off by making anvil's
  penalty socket unusable, mode 0): tests of a wrong password take no seconds.
"""

from __future__ import annotations

import email
import grp
import imaplib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
HOST = "127.0.0.2"


def find_dovecot() -> str | None:
    return DOVECOT if os.access(DOVECOT, os.X_OK) else shutil.which("dovecot")


def _free_ports(host: str, n: int) -> list[int]:
    """n distinct free ports (all held open together, so none is handed out twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _users() -> tuple[str, str, str, int, int]:
    """(login user, internal user, internal group, mail uid, mail gid) that dovecot accepts here."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return me.pw_name, me.pw_name, grp.getgrgid(os.getegid()).gr_name, me.pw_uid, os.getegid()

    def get(name: str) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return pwd.getpwnam("nobody")

    login, internal = get("dovenull"), get("dovecot")
    return login.pw_name, internal.pw_name, grp.getgrgid(internal.pw_gid).gr_name, internal.pw_uid, internal.pw_gid


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the loopback addresses and localhost that is its own CA (a client
    validates it with ``cafile=cert``). An EC key: generated in milliseconds, unlike RSA."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE"], check=True, capture_output=True, timeout=30)
    return cert, key


@dataclass
class Msg:
    uid: int
    flags: set[str]          # system flags (\\Seen, \\Recent, ...) and keywords as the server returns them
    message_id: str | None   # the Message-ID header's value


class Account:
    """One mailbox user; the helpers speak IMAP over implicit TLS, validating the server's certificate
    against ``server.cafile`` (as the product must)."""

    def __init__(self, server: "ImapServer", user: str, password: str):
        self.server, self.user, self.password = server, user, password

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.server.cafile))

    def _client(self) -> imaplib.IMAP4_SSL:
        c = imaplib.IMAP4_SSL(self.server.host, self.server.tls_port, ssl_context=self.ssl_context(), timeout=10)
        c.login(self.user, self.password)
        return c

    def create_folder(self, name: str) -> None:
        c = self._client()
        try:
            typ, data = c.create(name)
            if typ != "OK":
                raise RuntimeError(f"CREATE {name}: {data}")
        finally:
            c.logout()

    def append(self, raw: bytes, folder: str = "INBOX", flags: tuple[str, ...] = (),
               internal_date: datetime | None = None) -> int:
        """Store a message (creating the folder if missing); returns its UID. A naive internal_date is
        taken as local time."""
        c = self._client()
        try:
            if folder.upper() != "INBOX":
                c.create(folder)   # NO when it exists already: fine
            when = imaplib.Time2Internaldate(internal_date.astimezone() if internal_date else time.time())
            typ, data = c.append(folder, f"({' '.join(flags)})" if flags else None, when, raw)
            if typ != "OK":
                raise RuntimeError(f"APPEND to {folder}: {data}")
            m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            if not m:
                raise RuntimeError(f"APPEND to {folder}: no APPENDUID in {data}")
            return int(m.group(1))
        finally:
            c.logout()

    def messages(self, folder: str = "INBOX") -> list[Msg]:
        """Every message of the folder (read-only: nothing gets \\Seen), by UID; [] if there is no folder."""
        c = self._client()
        try:
            typ, _ = c.select(folder, readonly=True)
            if typ != "OK":
                return []
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            out = []
            for item in data or []:
                if not isinstance(item, tuple):
                    continue
                meta, header = item
                uid = int(re.search(rb"UID (\d+)", meta).group(1))
                flags = set(re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode().split())
                mid = email.message_from_bytes(header or b"")["Message-ID"]
                out.append(Msg(uid, flags, " ".join(str(mid).split()) if mid is not None else None))
            return sorted(out, key=lambda m: m.uid)
        finally:
            c.logout()


class ImapServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dondoc-imap-"))
        self.host = HOST
        self.tls_port, self.starttls_port = _free_ports(HOST, 2)
        self.cafile = self.dir / "cert.pem"
        self.proc: subprocess.Popen | None = None
        self._serial = count(1)

    def start(self) -> "ImapServer":
        """Start dovecot and return once both ports accept connections."""
        binary = find_dovecot()
        if binary is None:
            raise RuntimeError("dovecot is not installed (Debian: apt-get install dovecot-imapd)")
        login, internal, group, uid, gid = _users()
        cert, key = _certificate(self.dir)
        for d in ("base", "state", "mail", "users"):
            (self.dir / d).mkdir()
        os.chmod(self.dir, 0o755)   # mkdtemp's 0700 would keep dovecot's own users out
        os.chown(self.dir / "mail", uid, gid)
        conf = self.dir / "dovecot.conf"
        conf.write_text(f"""
base_dir = {self.dir}/base
state_dir = {self.dir}/state
log_path = {self.dir}/log
instance_name = dondoc-test-{os.getpid()}-{self.tls_port}
protocols = imap
listen = {HOST}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = {uid}
first_valid_gid = 0
mail_location = maildir:{self.dir}/mail/%u
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.dir}/users/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.dir}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {HOST}
    port = {self.starttls_port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {self.tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  chroot =
}}
""")
        self.proc = subprocess.Popen([binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self._log()
                self.stop()
                raise RuntimeError(f"dovecot stopped: {err}{log}")
            try:
                with socket.create_connection((self.host, self.tls_port), timeout=0.2), \
                        socket.create_connection((self.host, self.starttls_port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        log = self._log()
        self.stop()
        raise RuntimeError(f"dovecot did not start listening{log}")

    def _log(self) -> str:
        try:
            return "\n" + (self.dir / "log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def new_account(self) -> Account:
        """A fresh, empty mailbox with a random password, usable at once."""
        user = f"u{next(self._serial)}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        path = self.dir / "users" / user
        tmp = path.with_name(f".{user}.tmp")
        tmp.write_text(f"{user}:{{PLAIN}}{password}\n")
        tmp.replace(path)   # whole or absent when dovecot reads it
        return Account(self, user, password)

    def stop(self) -> None:
        """Kill dovecot and every process it started (one process group), then remove the directory.
        SIGKILL, not SIGTERM: a terminated master waits seconds for its children, and nothing of
        this server is kept."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
