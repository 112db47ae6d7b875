"""The tutorial app's own tests, against a live server: BASE_URL (default http://127.0.0.1:5000).
Standard library only, so they run wherever the app does: `python3 -m unittest discover tests` or pytest."""

import json
import os
import unittest
import urllib.error
import urllib.request

URL = os.environ.get("BASE_URL", "http://127.0.0.1:5000")


def get(path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(URL + path, timeout=10) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers.get("Content-Type", ""), refused.read().decode()


class Tutorial(unittest.TestCase):
    def test_health_says_healthy(self):
        status, kind, body = get("/health")
        self.assertEqual((status, kind), (200, "application/json"))
        self.assertEqual(json.loads(body)["status"], "healthy")

    def test_hello_greets_by_name(self):
        status, _, body = get("/hello/World")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["message"], "Hello, World!")

    def test_a_page_escapes_the_name_and_gives_the_time_in_a_zone(self):
        status, kind, body = get("/page/%3Cb%3E?zone=Asia/Tokyo")
        self.assertEqual((status, kind), (200, "text/html; charset=utf-8"))
        self.assertIn("Hello, &lt;b&gt;!", body)
        self.assertIn("12:00 UTC on 1 January 2026 is 21:00 in Asia/Tokyo.", body)

    def test_a_zone_that_does_not_exist_is_400(self):
        self.assertEqual(get("/page/x?zone=Mars/Olympus")[0], 400)

    def test_an_unknown_path_is_404(self):
        self.assertEqual(get("/nowhere")[0], 404)


if __name__ == "__main__":
    unittest.main()
