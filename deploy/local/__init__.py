"""One-host infrastructure for development and tests, without Docker.

See ``deploy/local/README.md``; the API is :mod:`deploy.local.launcher`.
"""
