"""A throw-away IMAP server for the tests: Debian's dovecot on loopback, its own configuration,
certificate, accounts and Maildirs under one temporary directory (like tests/pgserver.py).

Why dovecot and not a fake: the reader's guarantees (keywords set only after a commit, BODY.PEEK
leaving \\Seen alone, UIDs, MOVE, TLS and STARTTLS with certificate validation) are properties of a
real server. Nothing of /etc/dovecot is read (``dovecot -F -c <our file>``), so a system dovecot that
the package may have started does not matter. Run as root (CI), dovecot refuses root for its login
and mail processes: they run as the package's users (dovenull, dovecot); as another user, as that user.
"""

from __future__ import annotations

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
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
ACCOUNTS = 200


def find_dovecot() -> str | None:
    return DOVECOT if os.access(DOVECOT, os.X_OK) else shutil.which("dovecot")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _users() -> tuple[str, str, str, int, int]:
    """(login user, internal user, internal group, mail uid, mail gid) that dovecot accepts here."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return me.pw_name, me.pw_name, me.pw_name, me.pw_uid, me.pw_gid
    def get(name: str, fallback: str) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return pwd.getpwnam(fallback)
    login, internal = get("dovenull", "nobody"), get("dovecot", "nobody")
    import grp
    group = grp.getgrgid(internal.pw_gid).gr_name
    return login.pw_name, internal.pw_name, group, internal.pw_uid, internal.pw_gid


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost that is its own CA (a client validates
    it with ``cafile=cert``)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE"], check=True, capture_output=True)
    return cert, key


@dataclass
class Msg:
    uid: int
    flags: set[str]
    message_id: str | None


class Account:
    """One mailbox user; helpers speak IMAP over TLS, validating the server's certificate."""

    def __init__(self, server: "ImapServer", user: str, password: str):
        self.server, self.user, self.password = server, user, password

    def _client(self) -> imaplib.IMAP4_SSL:
        ctx = ssl.create_default_context(cafile=str(self.server.cafile))
        c = imaplib.IMAP4_SSL(self.server.host, self.server.tls_port, ssl_context=ctx, timeout=10)
        c.login(self.user, self.password)
        return c

    def create_folder(self, name: str) -> None:
        c = self._client()
        try:
            c.create(name)
        finally:
            c.logout()

    def append(self, raw: bytes, folder: str = "INBOX", flags: tuple[str, ...] = (),
               internal_date: datetime | None = None) -> int:
        c = self._client()
        try:
            if folder != "INBOX":
                c.create(folder)
            when = imaplib.Time2Internaldate(internal_date or time.time())
            typ, data = c.append(folder, f"({' '.join(flags)})" if flags else None, when, raw)
            assert typ == "OK", data
            m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            return int(m.group(1)) if m else 0
        finally:
            c.logout()

    def messages(self, folder: str = "INBOX") -> list[Msg]:
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
                meta, body = item[0], item[1]
                uid = int(re.search(rb"UID (\d+)", meta).group(1))
                flags = set(re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode().split())
                mid = re.search(rb"(?i)message-id:\s*(<[^>]+>)", body or b"")
                out.append(Msg(uid, flags, mid.group(1).decode() if mid else None))
            return sorted(out, key=lambda m: m.uid)
        finally:
            c.logout()


class ImapServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dondoc-imap-"))
        self.host = "127.0.0.1"
        self.tls_port = _free_port()
        self.starttls_port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.cafile = self.dir / "cert.pem"
        self._n = 0
        self._accounts: list[tuple[str, str]] = []

    def start(self) -> "ImapServer":
        binary = find_dovecot()
        if binary is None:
            raise RuntimeError("dovecot is not installed (Debian: apt-get install dovecot-imapd)")
        login, internal, group, uid, gid = _users()
        cert, key = _certificate(self.dir)
        for d in ("base", "state", "mail"):
            (self.dir / d).mkdir()
        os.chmod(self.dir, 0o755)
        os.chown(self.dir / "mail", uid, gid)
        # The accounts are made before the server starts: dovecot notices a changed passwd-file by
        # its modification time, which a file appended to twice in one second does not show.
        self._accounts = [(f"u{n}-{secrets.token_hex(3)}", secrets.token_urlsafe(12)) for n in range(ACCOUNTS)]
        (self.dir / "passwd").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self._accounts))
        conf = self.dir / "dovecot.conf"
        conf.write_text(f"""
base_dir = {self.dir}/base
state_dir = {self.dir}/state
log_path = {self.dir}/log
instance_name = dondoc-test-{os.getpid()}-{self.tls_port}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = {min(uid, 1) if uid else 0}
first_valid_gid = 0
mail_location = maildir:{self.dir}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.dir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.dir}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
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
                raise RuntimeError(f"dovecot stopped: {self.proc.stderr.read().decode(errors='replace')}"
                                   f"{self._log()}")
            try:
                with socket.create_connection((self.host, self.tls_port), timeout=0.2), \
                        socket.create_connection((self.host, self.starttls_port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not start listening{self._log()}")

    def _log(self) -> str:
        try:
            return "\n" + (self.dir / "log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def new_account(self) -> Account:
        """A fresh, empty mailbox (one of the accounts made at start)."""
        if self._n >= len(self._accounts):
            raise RuntimeError(f"tests/imapserver.py: more than {ACCOUNTS} accounts asked for; raise ACCOUNTS")
        user, password = self._accounts[self._n]
        self._n += 1
        return Account(self, user, password)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
