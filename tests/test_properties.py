"""Whatever a client sends, the app answers JSON and never a 5xx."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from wsgi_client import call

from service.app import create_app

app = create_app("property")

methods = st.one_of(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]),
                    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10))
path_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda name: b"/hello/" + name, st.binary(max_size=300)),
    st.builds(lambda name: b"/hello/" + name.encode("utf-8", "surrogatepass"), st.text(max_size=150)),
)


def as_target(raw: bytes) -> str:
    """Percent-encode every byte, so the app sees exactly `raw` as its decoded path (always rooted at /)."""
    return "/" + "".join(f"%{byte:02X}" for byte in raw.removeprefix(b"/"))


@settings(max_examples=500, deadline=None)
@given(method=methods, raw_path=path_bytes)
def test_any_method_and_path_bytes_get_a_json_answer_below_500(method, raw_path):
    result = call(app, method, as_target(raw_path))
    assert 200 <= result.status < 500
    assert result.headers["Content-Type"] == "application/json; charset=utf-8"
    if method == "HEAD":
        assert result.body == b""
    else:
        assert int(result.headers["Content-Length"]) == len(result.body)
        assert isinstance(json.loads(result.body), dict)
