"""The reference chat application on memory_ext: a FastAPI backend (`server.py`) whose every
request runs as the signed-in user under row-level security, and a page without a build step
(`static/`)."""
