# The classic "Flask API in Docker" tutorial's app, kept as it is: the baseline the study measures against.
import os

from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/health")
def health():
    return jsonify(status="healthy", environment=os.environ.get("APP_ENV", "development"))


@app.route("/hello/<name>")
def hello(name):
    return jsonify(message=f"Hello, {name}!", environment=os.environ.get("APP_ENV", "development"))


if __name__ == "__main__":
    port = int(os.environ.get("APP_PORT", 5000))
    app.run(host="0.0.0.0", port=port)
