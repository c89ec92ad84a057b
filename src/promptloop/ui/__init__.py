"""Server-rendered pages (Jinja2 + htmx). Pages parse, call one service, and render."""
