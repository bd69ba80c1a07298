"""`tiering serve`: the REST API, the archive dashboard, the scheduler and /metrics, over the same engine calls
the CLI uses. `tiering.service.app.create_app(context)` builds the ASGI app; no archival logic lives here."""
