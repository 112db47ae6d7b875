# The classic "Flask API in Docker" tutorial's app (bench/seed/app.py), with one endpoint more: /page/<name>
# needs what image minifiers drop (modules imported only when it is asked for, with a C extension and data
# files of their own, a template file read on demand, a dependency's compiled extension).
import os
from datetime import UTC, datetime

from flask import Flask, abort, jsonify, render_template, request

app = Flask(__name__)


@app.route("/health")
def health():
    return jsonify(status="healthy", environment=os.environ.get("APP_ENV", "development"))


@app.route("/hello/<name>")
def hello(name):
    return jsonify(message=f"Hello, {name}!", environment=os.environ.get("APP_ENV", "development"))


@app.route("/page/<name>")
def page(name):
    # Imported on the first request for a page, not at start-up: zoneinfo and its C extension
    # (lib-dynload/_zoneinfo.*.so), which read the zone's file from the system's time zone data.
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    zone = request.args.get("zone", "UTC")
    try:
        noon = datetime(2026, 1, 1, 12, tzinfo=UTC).astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        abort(400, f"no time zone {zone!r}")
    # templates/page.html, read when first rendered; Jinja2 escapes through MarkupSafe's compiled _speedups.
    return render_template("page.html", name=name, zone=zone, local=noon.strftime("%H:%M"))


if __name__ == "__main__":
    port = int(os.environ.get("APP_PORT", 5000))
    app.run(host="0.0.0.0", port=port)
