"""docs/api-quickstart.md runs as written: its shell blocks, in order, against a real
`ywm web` process and the demo church, end with a bulk send accepted and its progress
read by API key."""
from __future__ import annotations

import pathlib
import re
import subprocess
from typing import Any, Iterator

import pytest

from server.devtools import seed
from tests.server.ops_support import running_webs
from tests.workers.bulk import sql

GUIDE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "api-quickstart.md"


@pytest.fixture
def web(settings: Any) -> Iterator[int]:
    with running_webs(settings) as ports:
        yield ports[0]


def _shell_blocks() -> str:
    return "\n".join(re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S))


@pytest.mark.gen_test(timeout=120)
async def test_the_quickstart_sends_to_a_group_with_an_api_key(web: int, deps: Any,
                                                              tmp_path: Any) -> None:
    await seed.seed_demo(deps)
    script = _shell_blocks().replace("BASE=http://127.0.0.1:8000/api/v1",
                                     f"BASE=http://127.0.0.1:{web}/api/v1")
    assert f"127.0.0.1:{web}" in script and "$BASE/messages" in script
    done = subprocess.run(["bash", "-euo", "pipefail", "-c",
                           script + '\necho "RESULT $KEY $SEND"'],
                          cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    key, send = done.stdout.strip().splitlines()[-1].split()[1:]
    assert key.startswith("ywm_") and re.fullmatch(r"[0-9a-f-]{36}", send), done.stdout
    assert '"queued": 1' in done.stdout  # the progress read of step 5
    rows = sql(deps.settings, "SELECT recipient_count, created_by FROM messages")
    assert rows == [(1, None)]  # one recipient, sent by the key rather than a person
    assert not (tmp_path / "key.json").exists()  # the guide leaves no secret behind
