"""Every supervisor/*.conf parses, names only keys supervisord knows (it silently ignores
typos: the Zulip test), and loads in supervisord itself with the process model we want."""
from __future__ import annotations

import configparser
import pathlib

import pytest
from supervisor.options import ServerOptions

HERE = pathlib.Path(__file__).resolve().parents[2] / "supervisor"
CONF_FILES = sorted(HERE.glob("*.conf"))

PROGRAM_KEYS = {
    "command", "process_name", "numprocs", "numprocs_start", "priority", "autostart",
    "startsecs", "startretries", "autorestart", "exitcodes", "stopsignal", "stopwaitsecs",
    "stopasgroup", "killasgroup", "user", "redirect_stderr", "stdout_logfile",
    "stdout_logfile_maxbytes", "stdout_logfile_backups", "stdout_capture_maxbytes",
    "stdout_events_enabled", "stdout_syslog", "stderr_logfile", "stderr_logfile_maxbytes",
    "stderr_logfile_backups", "stderr_capture_maxbytes", "stderr_events_enabled",
    "stderr_syslog", "environment", "directory", "umask", "serverurl"}
SECTION_KEYS = {
    "supervisord": {"logfile", "logfile_maxbytes", "logfile_backups", "loglevel", "pidfile",
                    "umask", "nodaemon", "silent", "minfds", "minprocs", "nocleanup",
                    "childlogdir", "user", "directory", "strip_ansi", "environment",
                    "identifier"},
    "unix_http_server": {"file", "chmod", "chown", "username", "password"},
    "inet_http_server": {"port", "username", "password"},
    "supervisorctl": {"serverurl", "username", "password", "prompt", "history_file"},
    "rpcinterface": {"supervisor.rpcinterface_factory"},
    "include": {"files"},
    "group": {"programs", "priority"},
    "program": PROGRAM_KEYS,
}


def _section_type(name: str) -> str:
    return name.split(":", 1)[0]


@pytest.mark.parametrize("path", CONF_FILES, ids=lambda p: p.name)
def test_every_key_is_one_supervisord_knows(path):
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read(path)
    assert parser.sections(), f"{path.name} has no sections"
    for section in parser.sections():
        kind = _section_type(section)
        assert kind in SECTION_KEYS, f"{path.name}: unknown section [{section}]"
        unknown = set(parser.options(section)) - SECTION_KEYS[kind]
        assert not unknown, f"{path.name} [{section}]: unknown keys {sorted(unknown)}"


@pytest.mark.parametrize("path", [p for p in CONF_FILES if p.name != "supervisord.conf"],
                         ids=lambda p: p.name)
def test_programs_stop_gracefully_and_log_to_stdout(path):
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read(path)
    for section in (s for s in parser.sections() if s.startswith("program:")):
        program = parser[section]
        assert program["stopasgroup"] == program["killasgroup"] == "true", section
        assert program["stdout_logfile"] == "/dev/stdout", section
        assert program["stdout_logfile_maxbytes"] == "0", section
        assert program["stopsignal"] in ("TERM", "INT"), section
        assert "PYTHONUNBUFFERED" in program["environment"], section
        # Secrets come from supervisord's environment, never inline.
        assert "SECRET" not in program["environment"] and "TOKEN" not in program["environment"]


def test_supervisord_loads_the_process_model(tmp_path, monkeypatch):
    monkeypatch.setenv("YWM_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("YWM_WEB_PROCESSES", "3")
    options = ServerOptions()
    options.realize(args=["-c", str(HERE / "supervisord.conf")])
    programs = {p.name: p for g in options.process_group_configs for p in g.process_configs}
    web = [p for name, p in programs.items() if name.startswith("web_")]
    assert len(web) == 3 and {p.command for p in web} == {"ywm web"}
    assert all(p.stopwaitsecs > 20 for p in web)  # above server/main.py DRAIN_SECONDS
    consumers = [p for p in programs.values() if p.command.startswith("ywm worker")]
    assert len([p for p in consumers if "--no-periodic" not in p.command]) == 1
    assert all(p.stopsignal.name == "SIGINT" and p.stopwaitsecs > 30 for p in consumers)
