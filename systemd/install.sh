#!/usr/bin/env bash
# `sudo make install` / `sudo make uninstall`: sayso as a systemd service on Raspberry Pi OS
# Bookworm (Debian 12). Both are idempotent: run them again and they end in the same state.
#
#   install   system packages, the `sayso` user (groups audio, gpio), a venv in /opt/sayso,
#             models in /var/lib/sayso/models, /etc/sayso/config.toml (never overwritten),
#             the unit installed, enabled and (re)started; with [llm] backend = "server", a drop-in
#             that opens the network to that server's address alone (docs/llm-server.md).
#   uninstall everything but the turn log (/var/lib/sayso/turns.db) and the config.
set -euo pipefail
umask 022  # the venv and the docs are read by the sayso user, whatever root's umask is

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/sayso
STATE=/var/lib/sayso
CONF=/etc/sayso
UNIT=/etc/systemd/system/sayso.service
# the network opening for an LLM server on the LAN ([llm] backend = "server"), written from the config
NETDROPIN=/etc/systemd/system/sayso.service.d/llm-server.conf
# the system's Python: the service user must be able to run it (a pyenv under /root it cannot)
PYTHON=${PYTHON:-/usr/bin/python3}

say() { echo "sayso: $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "sayso: run this as root: sudo make ${1:-install}" >&2
    exit 1
fi

# systemd runs as PID 1 (not in a chroot or a container without it): start and stop for real
booted() { [ -d /run/systemd/system ]; }

install_sayso() {
    make -C "$SRC" --no-print-directory system-packages

    getent group audio >/dev/null || groupadd --system audio
    getent group gpio >/dev/null || groupadd --system gpio  # Debian has none; the unit needs it
    if id sayso >/dev/null 2>&1; then
        usermod --append --groups audio,gpio sayso
    else
        useradd --system --user-group --groups audio,gpio --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "sayso voice appliance" sayso
        say "created the system user sayso (groups audio, gpio)"
    fi

    # the venv; pip's wheel cache keeps llama-cpp-python's build for the next install
    [ -x "$PREFIX/bin/python" ] || "$PYTHON" -m venv "$PREFIX"
    if ! runuser -u sayso -- "$PREFIX/bin/python" -c "" 2>/dev/null; then
        echo "sayso: the user sayso cannot run $PREFIX/bin/python (made from $PYTHON);" \
            "run again with PYTHON= set to a Python 3.11+ every user can run" >&2
        exit 1
    fi
    # built from a copy, so the checkout gets no root-owned build/ folder
    build=$(mktemp -d)
    cp -r "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/device" "$build/"
    "$PREFIX/bin/pip" install --disable-pip-version-check -q "$build"
    rm -rf "$build"
    install -d -m 0755 "$PREFIX/share/doc/sayso"
    install -m 0644 "$SRC/README.md" "$SRC/hardware.md" "$SRC/docs/llm-server.md" "$PREFIX/share/doc/sayso/"
    say "installed sayso into $PREFIX"

    # models: the checkout's verified files are copied rather than downloaded again
    install -d -m 0700 "$STATE"
    install -d -m 0755 "$STATE/models"
    install -m 0644 "$SRC/models/manifest.toml" "$STATE/models/manifest.toml"
    for f in "$SRC"/models/*.gguf "$SRC"/models/*.onnx "$SRC"/models/*.onnx.json "$SRC"/models/*.zip; do
        if [ -f "$f" ] && [ ! -e "$STATE/models/${f##*/}" ]; then cp "$f" "$STATE/models/"; fi
    done
    # the fetch writes as the user that owns the folder, never as root: a manifest or a planted
    # symlink must not be able to make root write anywhere (HOME: pip's cache stays the user's)
    chown -R sayso:sayso "$STATE"
    runuser -u sayso -- env HOME="$STATE" PIP_NO_CACHE_DIR=1 \
        "$PREFIX/bin/sayso" --config /dev/null models fetch --dir "$STATE/models"

    install -d -m 0755 "$CONF"
    if [ -e "$CONF/config.toml" ]; then
        say "kept your $CONF/config.toml"
    else
        "$PREFIX/bin/sayso" --config /dev/null config template --state-dir "$STATE" >"$CONF/config.toml.new"
        chmod 0644 "$CONF/config.toml.new"
        mv "$CONF/config.toml.new" "$CONF/config.toml"
        say "wrote $CONF/config.toml (every key commented, with its default)"
    fi
    "$PREFIX/bin/sayso" --config "$CONF/config.toml" config check

    install -m 0644 "$SRC/systemd/sayso.service" "$UNIT"
    # The unit has no network. With an LLM server in the config, a drop-in opens the server's
    # address (IPAddressAllow=) and nothing else; with the local model, no drop-in: no network.
    # Run install again after changing [llm] in the config.
    netdropin=$("$PREFIX/bin/python" -m sayso.service.llm_unit "$CONF/config.toml")
    if [ -n "$netdropin" ]; then
        install -d -m 0755 "${NETDROPIN%/*}"
        printf '%s\n' "$netdropin" >"$NETDROPIN"
        chmod 0644 "$NETDROPIN"
        say "the service may reach the LLM server: $(grep '^IPAddressAllow=' "$NETDROPIN") ($NETDROPIN)"
    elif [ -e "$NETDROPIN" ]; then
        rm -f "$NETDROPIN"
        say "removed $NETDROPIN: the service has no network again"
    fi
    if booted; then
        systemctl daemon-reload
        systemctl enable sayso.service
        systemctl restart sayso.service
        say "sayso.service is enabled and started: \`systemctl status sayso\`, \`journalctl -u sayso -f\`"
    else
        systemctl enable sayso.service
        say "sayso.service is enabled; systemd is not running here, so it starts at the next boot"
    fi
    say "check the hardware with: sudo -u sayso $PREFIX/bin/sayso doctor"
}

uninstall_sayso() {
    if [ -e "$UNIT" ]; then
        if booted; then
            systemctl disable --now sayso.service
        else
            systemctl disable sayso.service
        fi
        rm -f "$UNIT" "$NETDROPIN"
        rmdir --ignore-fail-on-non-empty "${NETDROPIN%/*}" 2>/dev/null || true
        booted && systemctl daemon-reload
        say "removed sayso.service"
    fi
    rm -rf "$PREFIX" "$STATE/models"
    if id sayso >/dev/null 2>&1; then
        userdel sayso
        say "removed the user sayso"
    fi
    say "removed $PREFIX and $STATE/models"
    say "kept the turn log ($STATE/turns.db) and the config ($CONF/config.toml);" \
        "to remove them too: sudo rm -rf $STATE $CONF"
}

case "${1:-}" in
    install) install_sayso ;;
    uninstall) uninstall_sayso ;;
    *) echo "usage: $0 install|uninstall" >&2; exit 2 ;;
esac
