"""The web console: `dondoc web`, or served by `dondoc run` in the same process.

FastAPI with pages rendered on the server (Jinja2, autoescaped), a little plain JavaScript from
static/ (no inline script: the Content-Security-Policy forbids it), nothing fetched from the
internet. Pages use the same services as the CLI (engine.app.services, accounts, confirmations)
and the rules the :class:`~engine.app.rulesholder.RulesHolder` keeps loaded.

Where is …: the app and its error pages — app.py; login, sessions, CSRF, security headers —
security.py; Jinja2 and the Vietnamese filters — render.py; one module per page under routes/.
"""
