#!/bin/bash
# From a fresh Debian 12 machine to recording: install dependencies, build,
# install under /usr/local, start sealtraild on the default store
# (/var/lib/sealtrail), and say how to look at what it records. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
make -j"$(nproc)"
make install PREFIX=/usr/local

if [ -d /run/systemd/system ]; then
	install -m 0644 tools/sealtraild.service /etc/systemd/system/sealtraild.service
	systemctl daemon-reload
	systemctl enable --now sealtraild
	echo "sealtraild started by systemd (journalctl -u sealtraild for its log)"
else
	# no systemd (containers, minimal VMs): run it detached, log to a file
	if /usr/local/bin/sealtrail status >/dev/null 2>&1; then
		echo "sealtraild is already running"
	else
		setsid /usr/local/sbin/sealtraild >>/var/log/sealtraild.log 2>&1 </dev/null &
		# recording, not just holding the store (which it reads back first)
		for _ in $(seq 300); do
			/usr/local/bin/sealtrail --json status 2>/dev/null |
				grep -q '"state":"recording"' && break
			sleep 0.2
		done
		echo "sealtraild started in the background (log: /var/log/sealtraild.log)"
	fi
fi
/usr/local/bin/sealtrail status || true
cat <<'MSG'

Every ssh login on this host is now recorded. Try:
  sealtrail sessions                      # who logged in, from where, when
  sealtrail events SESSION                # what they ran (argv, exit codes)
  sealtrail replay SESSION                # watch it (SESSION: id or prefix)
  sealtrail export SESSION --format asciicast --output s.cast && asciinema play s.cast
MSG
