# A Python virtualenv with pip, made whatever the machine offers (sourced by sdk-lane.sh and
# fetch-models.sh). Expects VENV, PYTHON and a `log` function.

make_venv() {
  # 1. The standard library's venv (needs ensurepip; Debian splits it into python3-venv).
  if "$PYTHON" -m venv "$VENV" >/dev/null 2>&1 && [[ -x "$VENV/bin/python" ]]; then
    return 0
  fi
  rm -rf "$VENV"
  # 2. venv without pip, then bootstrap pip from the interpreter's own pip if it has one.
  if "$PYTHON" -m venv --without-pip "$VENV" >/dev/null 2>&1 && [[ -x "$VENV/bin/python" ]]; then
    if "$PYTHON" -m pip --version >/dev/null 2>&1; then
      local site
      site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
      if "$PYTHON" -m pip install -q --target "$site" pip >/dev/null 2>&1 \
         && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        return 0
      fi
    fi
  fi
  rm -rf "$VENV"
  # 3. The virtualenv package, installed for this user.
  if "$PYTHON" -m pip --version >/dev/null 2>&1; then
    if "$PYTHON" -m virtualenv --version >/dev/null 2>&1 \
       || "$PYTHON" -m pip install -q --user virtualenv >/dev/null 2>&1 \
       || "$PYTHON" -m pip install -q --user --break-system-packages virtualenv >/dev/null 2>&1; then
      if "$PYTHON" -m virtualenv -q "$VENV" && [[ -x "$VENV/bin/python" ]]; then
        return 0
      fi
    fi
  fi
  rm -rf "$VENV"
  # 4. As root on Debian/Ubuntu: install python3-venv and try again.
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing python3-venv with apt-get"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    if "$PYTHON" -m venv "$VENV" && [[ -x "$VENV/bin/python" ]]; then
      return 0
    fi
  fi
  log "could not create a virtualenv at $VENV with $PYTHON"
  return 1
}

# A virtualenv with pip at $VENV (made with $PYTHON) unless one is there.
ensure_venv() {
  if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    log "creating virtualenv at $VENV"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    make_venv
  fi
}
