"""The app: web pages over the roles, beside the CLI — the member's dashboard and the hub's admin page."""
