"""One module per page; ROUTERS is the order they are mounted in (explicit imports, no discovery)."""

from engine.app.web.routes import auth, overview

ROUTERS = [auth.router, overview.router]
