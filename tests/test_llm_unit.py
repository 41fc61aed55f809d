"""The drop-in that opens the service's network to its LLM server alone still passes systemd's checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sayso import config
from sayso.service.llm_unit import DROPIN_NAME, dropin, main

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "sayso.service"


def server_settings(url: str = "http://192.168.1.20:8080/v1") -> config.Settings:
    return config.parse({"llm": {"backend": "server", "server_url": url}})


def test_the_local_backend_gets_no_dropin_and_no_network():
    assert dropin(config.Settings()) == ""


def test_the_dropin_opens_the_servers_address_and_nothing_else():
    lines = [line for line in dropin(server_settings()).splitlines() if not line.startswith("#")]
    assert lines == ["[Service]", "PrivateNetwork=no", "RestrictAddressFamilies=",
                     "RestrictAddressFamilies=AF_UNIX AF_INET", "IPAddressAllow=192.168.1.20"]
    v6 = dropin(server_settings("http://[fd00::20]:11434/v1"))
    assert "RestrictAddressFamilies=AF_UNIX AF_INET6\n" in v6 and "IPAddressAllow=fd00::20\n" in v6
    # a name is resolved at install, since the service reaches no DNS server
    assert "IPAddressAllow=127.0.0.1" in dropin(server_settings("http://localhost:8080/v1"))


def test_install_gets_the_dropin_from_the_config_file(tmp_path, capsys):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[llm]\nbackend = "server"\nserver_url = "http://10.0.0.7:8080/v1"\n')
    assert main([str(cfg)]) == 0
    assert "IPAddressAllow=10.0.0.7" in capsys.readouterr().out
    cfg.write_text('[llm]\nbackend = "server"\n')
    assert main([str(cfg)]) == 1
    assert "server_url" in capsys.readouterr().err


def test_the_unit_with_the_dropin_verifies_and_scores_at_most_2(tmp_path):
    unit = tmp_path / "sayso.service"
    unit.write_text(UNIT.read_text().replace("/opt/sayso/bin/sayso", str(Path(sys.executable).with_name("sayso"))))
    (tmp_path / "sayso.service.d").mkdir()
    (tmp_path / "sayso.service.d" / DROPIN_NAME).write_text(dropin(server_settings()))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stderr) == (0, "")
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True,
                       timeout=120)
    m = re.search(r"Overall exposure level for sayso\.service: (\d+\.\d)", r.stdout)
    assert m, r.stdout + r.stderr
    assert "Service defines IP address allow list with non-localhost entries" in r.stdout, "the drop-in was not read"
    assert float(m.group(1)) <= 2.0, r.stdout
