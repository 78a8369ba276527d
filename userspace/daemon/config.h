/*
 * DIR/config.json: what this sealtraild runs with, its defaults resolved,
 * written at each start for `sealtrail config` (admins; the store is
 * root's, and command sinks may hold credentials).
 */
#ifndef SEALTRAIL_DAEMON_CONFIG_H
#define SEALTRAIL_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "session/tracker.h"
#include "store/sinks.h"

struct daemon_config {
	int argc;
	char **argv;
	const char *store_dir;
	const struct tracker *t; /* sshd, subsystems, transfers, capture cap */
	const struct checkpoint_sinks *sinks;
	unsigned long ringbuf;
	const char *scheduling;
	const char *socket_path; /* NULL: no socket */
	const char *roles_path;
	const char *cli_path;
	const uint8_t *auditor_pk; /* NULL: none */
	bool auditor_change;
	uint64_t started_ns;
};

int config_write(const struct daemon_config *c);

#endif
