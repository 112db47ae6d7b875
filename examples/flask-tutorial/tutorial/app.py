# The classic "Flask API in Docker" tutorial's app (bench/seed/app.py), with one endpoint more: /page/<name>
# needs what image minifiers drop (a module imported only when it is asked for, a template file read on
# demand, a compiled extension).
import os

from flask import Flask, jsonify, render_template

app = Flask(__name__)


@app.route("/health")
def health():
    return jsonify(status="healthy", environment=os.environ.get("APP_ENV", "development"))


@app.route("/hello/<name>")
def hello(name):
    return jsonify(message=f"Hello, {name}!", environment=os.environ.get("APP_ENV", "development"))


@app.route("/page/<name>")
def page(name):
    # Imported here, on the first request for a page: a C extension of the standard library
    # (lib-dynload/unicodedata.*.so) that nothing imports at start-up.
    import unicodedata

    name = unicodedata.normalize("NFC", name)
    characters = [unicodedata.name(character, "?") for character in name]
    # templates/page.html, read when first rendered; Jinja2 escapes through MarkupSafe's compiled _speedups.
    return render_template("page.html", name=name, characters=characters)


if __name__ == "__main__":
    port = int(os.environ.get("APP_PORT", 5000))
    app.run(host="0.0.0.0", port=port)
