"""hello-api: a standard-library WSGI API served by waitress."""

__version__ = "1.0.0"
