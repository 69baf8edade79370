"""deploy/nginx/ywm.conf on Debian's real nginx, in front of two real `ywm web` processes.

One NGINX and two boxes serve the whole module (starting them is most of its time); tests
that need a box to fail get their own NGINX in front of a box that dies mid-request.
"""
from __future__ import annotations

import asyncio
import gzip
import pathlib
import re
import shutil
import subprocess
import tempfile
import uuid
from typing import Any, Iterator

import pytest
import tornado.httpclient
import ujson

from tests.deploy.nginx_support import DyingBox, Nginx, WebBox, ensure_nginx, load_render
from tests.factories import create_church
from tests.server.ops_support import wait_until
from tests.stream_client import close_sockets, commit_events, connect, read_frame

__all__ = ["close_sockets"]

HSTS = "max-age=63072000; includeSubDomains"
CLIENT = "127.0.0.5"  # the browser's address: loopback has all of 127.0.0.0/8
LOAD_BALANCER = "127.0.0.7"  # listed as a trusted proxy in front of NGINX
FLOODER = "127.0.0.8"  # its own address, so its auth bucket is nobody else's


@pytest.fixture(scope="module")
def nginx_bin() -> str:
    return ensure_nginx()


@pytest.fixture(scope="module")
def boxes(settings: Any) -> Iterator[list[WebBox]]:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="ywm-boxes-"))
    # The app trusts X-Real-IP because NGINX sets it; the app's own auth bucket is opened
    # wide so that a 429 here can only be NGINX's zone.
    pair = [WebBox(settings, workdir, YWM_TRUST_PROXY_HEADERS="true",
                   YWM_AUTH_RATE_BURST="100000") for _ in range(2)]
    try:
        for box in pair:
            box.start()
        for box in pair:
            box.wait_ready()
        yield pair
    finally:
        for box in pair:
            box.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def front(nginx_bin: str, boxes: list[WebBox]) -> Iterator[Nginx]:
    nginx = Nginx(nginx_bin, [box.address for box in boxes], trusted_proxies=[LOAD_BALANCER])
    try:
        nginx.start()
        yield nginx
    finally:
        nginx.stop()


def _request(nginx: Nginx, path: str, **kw: Any) -> tornado.httpclient.HTTPRequest:
    kw.setdefault("request_timeout", 20)
    return tornado.httpclient.HTTPRequest(nginx.url + path, ca_certs=str(nginx.certificate),
                                          **kw)


async def _fetch(nginx: Nginx, path: str, **kw: Any) -> tornado.httpclient.HTTPResponse:
    client = tornado.httpclient.AsyncHTTPClient()
    return await client.fetch(_request(nginx, path, **kw), raise_error=False)


def _new_id() -> str:
    return f"test-{uuid.uuid4().hex}"


def _logged_by(boxes: list[WebBox], request_id: str) -> dict[WebBox, dict[str, Any]]:
    """The boxes whose app logged this request id, with their log line (waits, bounded:
    the app logs a request just after answering it)."""
    def find() -> dict[WebBox, dict[str, Any]]:
        return {box: line for box in boxes for line in box.requests()
                if line.get("request_id") == request_id}
    return wait_until(find, 10)


def test_rendered_config_passes_nginx_t(nginx_bin: str) -> None:
    nginx = Nginx(nginx_bin, ["127.0.0.1:9", "127.0.0.2:9"],
                  trusted_proxies=["10.0.0.0/8"], unlimited_clients=["127.0.0.9"])
    try:
        result = nginx.check()
        assert result.returncode == 0, result.stderr
        assert "test is successful" in result.stderr
        site = (nginx.prefix / "ywm.conf").read_text()
        assert "{{" not in site
        assert site.count("max_fails=3 fail_timeout=30s;") == 2
        assert "set_real_ip_from 10.0.0.0/8;" in site
    finally:
        nginx.stop()


def test_render_refuses_what_would_break_the_config() -> None:
    render = load_render()
    with pytest.raises(render.RenderError, match="upstream"):
        render.render_site(upstreams=[], https_listen="443", http_listen="80",
                           certificate="/c", certificate_key="/k", cache_dir="/d",
                           access_log="/a")
    with pytest.raises(render.RenderError, match="not a plain address"):
        render.render_site(upstreams=["127.0.0.1:1; include /etc/passwd"], https_listen="443",
                           http_listen="80", certificate="/c", certificate_key="/k",
                           cache_dir="/d", access_log="/a")
    with pytest.raises(render.RenderError, match="no value"):
        render.render_template("listen {{port}};\n", {}, {})


def test_the_shipped_limits_are_the_architecture_ones() -> None:
    site = (pathlib.Path(load_render().TEMPLATE)).read_text()
    assert re.search(r"zone=ywm_auth:\S+ rate=10r/s;", site)
    assert re.search(r"zone=ywm_api:\S+ rate=100r/s;", site)
    assert "limit_req zone=ywm_auth" in site.split("location /api/v1/auth/")[1].split("}")[0]
    webhooks = site.split("location /webhooks/")[1].split("}")[0]
    assert "limit_req zone=ywm_webhooks" in webhooks
    # The app's limits (server/platform/settings.py): 1 MiB JSON, 20 MiB import.
    assert "client_max_body_size 1m;" in site and "client_max_body_size 20m;" in site


@pytest.mark.gen_test(timeout=60)
async def test_requests_are_spread_over_both_boxes(front: Nginx, boxes: list[WebBox]) -> None:
    ids = [_new_id() for _ in range(10)]
    for request_id in ids:
        response = await _fetch(front, "/health", headers={"X-Request-ID": request_id})
        assert response.code == 200
    served_by = [_logged_by(boxes, request_id) for request_id in ids]
    assert all(len(found) == 1 for found in served_by), served_by  # each on one box
    per_box = [sum(box in found for found in served_by) for box in boxes]
    assert all(count > 0 for count in per_box), per_box
    upstreams = {front.access_with_id(request_id)["upstream"] for request_id in ids}
    assert upstreams == {box.address for box in boxes}


@pytest.mark.gen_test(timeout=60)
async def test_https_only_with_hsts_and_the_request_id_echoed(front: Nginx,
                                                              boxes: list[WebBox]) -> None:
    sent = _new_id()
    response = await _fetch(front, "/api/v1/openapi.json", headers={"X-Request-ID": sent})
    assert response.code == 200
    assert response.headers.get_list("Strict-Transport-Security") == [HSTS]
    assert response.headers.get_list("X-Request-ID") == [sent]
    assert _logged_by(boxes, sent)  # the app logged the client's id

    # No id from the client: NGINX makes one, and the app logs that same id.
    response = await _fetch(front, "/health")
    made = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert _logged_by(boxes, made)

    # Plain HTTP only redirects to HTTPS.
    plain = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{front.http_port}/health", follow_redirects=False,
        raise_error=False)
    assert plain.code == 301
    assert plain.headers["Location"] == f"https://127.0.0.1:{front.https_port}/health"


@pytest.mark.gen_test(timeout=60)
async def test_the_app_sees_the_client_address_only_as_nginx_reports_it(
        front: Nginx, boxes: list[WebBox]) -> None:
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"}
    direct = _new_id()
    response = await _fetch(front, "/health", network_interface=CLIENT,
                            headers={"X-Request-ID": direct, **forged})
    assert response.code == 200
    (line,) = _logged_by(boxes, direct).values()
    assert line["remote_ip"] == CLIENT  # the headers the client wrote were not believed

    # Through the trusted load balancer, its X-Forwarded-For names the client.
    relayed = _new_id()
    response = await _fetch(front, "/health", network_interface=LOAD_BALANCER,
                            headers={"X-Request-ID": relayed, **forged})
    assert response.code == 200
    (line,) = _logged_by(boxes, relayed).values()
    assert line["remote_ip"] == "203.0.113.9"


@pytest.mark.gen_test(timeout=60)
async def test_auth_routes_answer_429_past_the_burst(front: Nginx) -> None:
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=100)
    try:
        # 100 at once against 10 r/s with a burst of 20: NGINX refuses the excess itself.
        responses = await asyncio.gather(*(
            client.fetch(_request(front, "/api/v1/auth/me", network_interface=FLOODER),
                         raise_error=False) for _ in range(100)))
    finally:
        client.close()
    codes = [r.code for r in responses]
    assert set(codes) == {401, 429}, codes
    assert codes.count(401) >= 21  # the burst and the first token all passed
    refused = next(r for r in responses if r.code == 429)
    assert ujson.loads(refused.body)["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["Strict-Transport-Security"] == HSTS
    # Another client is not affected by the flood.
    assert (await _fetch(front, "/api/v1/auth/me", network_interface=CLIENT)).code == 401


@pytest.mark.gen_test(timeout=60)
async def test_json_is_gzipped_and_hashed_assets_are_cached_a_year(front: Nginx) -> None:
    response = await _fetch(front, "/api/v1/openapi.json", decompress_response=False,
                            headers={"Accept-Encoding": "gzip"})
    assert response.code == 200 and response.headers["Content-Encoding"] == "gzip"
    assert ujson.loads(gzip.decompress(response.body))["openapi"]

    shell = await _fetch(front, "/")
    asset = re.search(r'/static/[0-9a-f]+/app\.js', shell.body.decode())
    assert asset, shell.body[:500]
    ids = [_new_id(), _new_id()]
    for request_id in ids:
        response = await _fetch(front, asset.group(0), headers={"X-Request-ID": request_id})
        assert response.code == 200
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # The second copy came from NGINX's cache, not from a box.
    assert [front.access_with_id(i)["cache"] for i in ids] == ["MISS", "HIT"]


@pytest.mark.gen_test(timeout=60)
async def test_metrics_are_not_public_and_bodies_are_bounded(front: Nginx,
                                                             boxes: list[WebBox]) -> None:
    assert (await _fetch(front, "/metrics")).code == 404
    # Prometheus scrapes each box directly, and finds the series the alerts read.
    for box in boxes:
        for _ in range(2):  # the first scrape is itself a request the second one counts
            scraped = await tornado.httpclient.AsyncHTTPClient().fetch(
                f"http://{box.address}/metrics")
        names = set(re.findall(r"^(ywm_\w+)", scraped.body.decode(), re.M))
        assert {"ywm_http_requests_total", "ywm_http_request_duration_seconds_bucket"} <= names
    response = await _fetch(front, "/api/v1/conversations", method="POST",
                            body=b"x" * (1_048_576 + 1),
                            headers={"Content-Type": "application/json"})
    assert response.code == 413
    assert ujson.loads(response.body)["error"]["code"] == "payload_too_large"


@pytest.mark.gen_test(timeout=60)
async def test_the_stream_works_through_nginx_over_tls(front: Nginx, deps: Any) -> None:
    owner = await create_church(deps)
    url = front.url.replace("https", "wss") + "/api/v1/stream"
    ws = await connect(tornado.httpclient.HTTPRequest(
        url, ca_certs=str(front.certificate),
        headers={"Authorization": f"Bearer {owner['access_token']}"}))
    assert (await read_frame(ws, 15))["type"] == "hello"
    events = await commit_events(deps.db, deps.redis, owner["church_id"], 3)
    assert [(await read_frame(ws, 15))["id"] for _ in events] == [e["id"] for e in events]


@pytest.fixture
def dying_front(nginx_bin: str, boxes: list[WebBox]) -> Iterator[tuple[Nginx, DyingBox]]:
    dying = DyingBox()
    dying.start()
    nginx = Nginx(nginx_bin, [dying.address, boxes[0].address])
    try:
        nginx.start()
        yield nginx, dying
    finally:
        nginx.stop()
        dying.stop()


@pytest.mark.gen_test(timeout=60)
async def test_a_get_is_retried_on_the_other_box_but_a_post_is_not(
        dying_front: tuple[Nginx, DyingBox], boxes: list[WebBox]) -> None:
    nginx, dying = dying_front
    live = boxes[0]
    # least_conn alternates between idle boxes: within a few requests one lands on the
    # dying box (three failures would take it out, so stop at the first).
    post_answers = {}
    for _ in range(4):
        request_id = _new_id()
        response = await _fetch(nginx, "/api/v1/conversations", method="POST", body=b"{}",
                                headers={"X-Request-ID": request_id,
                                         "Content-Type": "application/json"})
        post_answers[request_id] = response
        if request_id in dying.seen:
            break
    (lost,) = [i for i in post_answers if i in dying.seen]
    assert post_answers[lost].code == 503
    assert ujson.loads(post_answers[lost].body)["error"]["code"] == "unavailable"
    assert live.request_with_id(lost, timeout=2) is None  # never sent to the other box
    for request_id, response in post_answers.items():
        if request_id != lost:
            assert response.code == 401  # answered by the live box

    get_answers = {}
    for _ in range(4):
        request_id = _new_id()
        get_answers[request_id] = await _fetch(nginx, "/health",
                                               headers={"X-Request-ID": request_id})
        if request_id in dying.seen:
            break
    retried = [i for i in get_answers if i in dying.seen]
    assert len(retried) == 1
    assert all(response.code == 200 for response in get_answers.values())
    assert live.request_with_id(retried[0]) is not None  # the same request, on the live box
    log = nginx.access_with_id(retried[0])
    assert log["upstream"] == f"{dying.address}, {live.address}"


def test_the_certificate_script_makes_a_pair_for_localhost(tmp_path: pathlib.Path) -> None:
    crt, _ = load_render().ensure_certificate(tmp_path)
    text = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-text"],
                          capture_output=True, text=True, check=True, timeout=30).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
