"""The classic "Flask API in Docker" tutorial's app, as a package, served by this project's images."""
