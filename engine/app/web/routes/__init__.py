"""One module per page; ROUTERS is the order they are mounted in (explicit imports, no discovery)."""

from engine.app.web.routes import (auth, calendar_page, confirm, confirmations, exports, inbox, instances, kpi, matrix,
                                   obligations, outbox, overview, rules_edit, rules_page, units)

ROUTERS = [auth.router, overview.router, matrix.router, units.router, obligations.router, instances.router,
           confirmations.router, confirm.router, inbox.router, outbox.router, rules_page.router, rules_edit.router, kpi.router, calendar_page.router,
           exports.router]
