"""Command-line interface (Typer). Thin: parses arguments, calls the library, renders results."""
