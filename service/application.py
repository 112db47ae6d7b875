"""The WSGI application the server serves: hello-api's own, or the one APP_WSGI names.

APP_WSGI is MODULE:NAME (the module's attribute is the app) or MODULE:FACTORY() (a function called with no
arguments returns it), as gunicorn and waitress-serve read theirs. The module is imported from the working
directory (the images' WORKDIR) and PYTHONPATH. Whatever goes wrong is one line saying what to do, not a
traceback: the server exits 2, as for any other setting it cannot use.
"""

import importlib
import sys
import traceback
from collections.abc import Callable

from . import config
from .app import create_app

WSGIApp = Callable[..., object]


class ApplicationError(ValueError):
    """The app APP_WSGI names cannot be served; the message says why and what to do."""


def load(settings: config.Settings) -> WSGIApp:
    if not settings.wsgi:
        return create_app(settings.environment)
    module_name, _, target = settings.wsgi.partition(":")
    named = f"APP_WSGI={settings.wsgi}"
    module = import_module(module_name, named)
    found: object = module
    for attribute in target.removesuffix("()").split("."):
        if not hasattr(found, attribute):
            raise ApplicationError(f"{named}: {module_name} ({module.__file__}) has no {attribute!r}: name the "
                                   "object that is the app, or the function that returns it followed by ()")
        found = getattr(found, attribute)
    if target.endswith("()"):
        found = call_factory(found, named)
    if not callable(found):
        raise ApplicationError(f"{named} is a {type(found).__name__}, not a WSGI app (a callable taking environ "
                               "and start_response)")
    return found


def import_module(module_name: str, named: str) -> object:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name and (module_name == missing.name or module_name.startswith(f"{missing.name}.")):
            raise ApplicationError(f"{named}: no module {missing.name!r} on the path (the working directory and "
                                   f"PYTHONPATH: {', '.join(p or '.' for p in sys.path[:4])}...): run from the app's "
                                   "folder or add it to PYTHONPATH") from None
        raise ApplicationError(f"{named}: importing {module_name} needs {missing.name!r}, which is not installed "
                               f"({where(missing)}): add it to the app's requirements") from None
    except Exception as failure:  # the app's own code failed while importing: say where, briefly
        raise ApplicationError(f"{named}: importing {module_name} raised {described(failure)}") from None


def call_factory(factory: object, named: str) -> object:
    if not callable(factory):
        raise ApplicationError(f"{named}: {type(factory).__name__} cannot be called: drop the ()")
    try:
        return factory()
    except Exception as failure:
        raise ApplicationError(f"{named}: the factory raised {described(failure)}") from None


def described(failure: BaseException) -> str:
    """`Type: message (file:line)`, on one line, the file and line where it was raised."""
    return f"{type(failure).__name__}: {' '.join(str(failure).split())} ({where(failure)})"


def where(failure: BaseException) -> str:
    """The file and line an exception was raised at, innermost frame."""
    frames = traceback.extract_tb(failure.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "no traceback"
