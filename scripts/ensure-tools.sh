#!/usr/bin/env bash
# Run first by `npm test` (package.json pretest): installs the Debian packages the test suite
# needs when they are missing, so that `npm install && npm test` works on a fresh machine, CI's
# included. Quiet when everything is there. Installs as root or through passwordless sudo;
# otherwise prints one line naming the packages and fails. TANDEM_SKIP_TOOLS=1 (honoured only
# where CI is unset) installs nothing: the tests that need a missing tool skip, saying which.
set -euo pipefail

# need <Debian package> <check...>: the package is missing when the check fails.
need() {
  local pkg=$1
  shift
  "$@" >/dev/null 2>&1 || missing+=("$pkg")
}
has() { command -v "$1" || { [ -n "${2:-}" ] && [ -x "$2" ]; }; }

# The one list of what the suite needs, and why:
check() {
  missing=()
  # haproxy: the real load balancer in front of the instances in the zero-downtime tests.
  need haproxy has haproxy /usr/sbin/haproxy
  # zsh: the completion tests run the zsh completion script in a real zsh.
  need zsh has zsh
  # systemd: systemd-analyze verifies the units `tandem unit systemd` prints; systemd-notify is
  # driven against tandem's sd_notify socket (systemd need not be running).
  need systemd has systemd-analyze /usr/bin/systemd-analyze
  need systemd has systemd-notify /usr/bin/systemd-notify
  # python3: Debian's /usr/bin/python3 runs the stand-in notify socket (Node.js cannot receive
  # Unix datagrams) and faultfs (a PATH python3 such as pyenv's lacks Debian's modules).
  need python3 test -x /usr/bin/python3
  # fuse3: fusermount3 unmounts faultfs, the fault-injecting shared directory of the HA tests.
  need fuse3 has fusermount3 /usr/bin/fusermount3
  # python3-fusepy: the FUSE binding faultfs is written with (module fusepy, on libfuse 2).
  need python3-fusepy /usr/bin/python3 -c 'import fusepy'
  # faketime: libfaketime gives a process a clock of its own (clock skew and jumps between hosts).
  need faketime has faketime /usr/bin/faketime
  # etcd-server: a real etcd cluster (1 or 3 members on loopback ports) under the lease's etcd
  # store (issue 12). The tests start their own members; an etcd the package may start as a
  # service (on 2379) is left alone and never used.
  need etcd-server has etcd /usr/bin/etcd
  # util-linux: setpriv and prlimit run instances as their component's user with its limits
  # (issue 14); passwd: useradd/groupadd make the user the tests run an instance as.
  need util-linux has prlimit /usr/bin/prlimit
  need util-linux has setpriv /usr/bin/setpriv
  need passwd has useradd /usr/sbin/useradd
  # openssl: a throwaway CA, server and client certificates for the etcd client's TLS tests.
  need openssl has openssl /usr/bin/openssl
  # resource-agents: ocf-tester runs tandem's OCF resource agent (tandem ocf) through Pacemaker's
  # sequence of actions. libxml2-utils: its xmllint, with which ocf-tester checks the meta-data
  # (resource-agents only recommends it, and recommends are not installed here).
  need resource-agents has ocf-tester /usr/sbin/ocf-tester
  need libxml2-utils has xmllint /usr/bin/xmllint
  # rsyslog: a real syslog server (rsyslogd in the foreground with its own config and loopback
  # ports) receives logs.syslog's RFC 5424 messages over TCP and UDP in the syslog tests.
  need rsyslog has rsyslogd /usr/sbin/rsyslogd
  # chromium: the status page of control.http is tested in a real browser (headless, driven by
  # playwright-core over the DevTools protocol; never a browser that playwright downloads), and
  # `npm run screenshot` takes docs/status-page.png with it.
  need chromium has chromium /usr/bin/chromium
}

check

[ ${#missing[@]} -eq 0 ] && exit 0
# One package may be named by several checks (systemd).
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
pkgs="${missing[*]}"

if [ "${TANDEM_SKIP_TOOLS:-}" = 1 ] && [ -z "${CI:-}" ]; then
  echo "ensure-tools: not installing $pkgs (TANDEM_SKIP_TOOLS=1): the tests that need them skip" >&2
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    sudo=(none)
  fi
fi
if [ "${sudo[*]}" = none ] || ! command -v apt-get >/dev/null; then
  echo "ensure-tools: the tests need the Debian packages: $pkgs; install them (sudo apt-get install -y $pkgs) or run TANDEM_SKIP_TOOLS=1 npm test to skip the tests that need them" >&2
  exit 1
fi

echo "ensure-tools: installing $pkgs" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "ensure-tools: apt-get could not install $pkgs (its output is above)" >&2
  exit 1
fi
check
if [ ${#missing[@]} -ne 0 ]; then
  echo "ensure-tools: still missing after apt-get install: ${missing[*]}" >&2
  exit 1
fi
