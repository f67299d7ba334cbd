"""CLI sub-commands; each module has ``register(app)`` adding its command(s) to the typer app."""
