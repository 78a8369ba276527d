/*
 * Who may read the store through sealtraild: the roles file (default
 * /etc/sealtrail/roles, documented in README.md, "Access for auditors"):
 *
 *   # comments and blank lines are ignored
 *   auditor: alice, bob, @auditors
 *   admin: carol, @wheel
 *
 * A member is a user name or @group (primary or supplementary, resolved
 * when a request comes, so group changes apply at once). A role may be
 * given on several lines; the strongest role that matches wins; root is
 * always admin. An absent file means only root.
 */
#ifndef SEALTRAIL_ACCESS_ROLES_H
#define SEALTRAIL_ACCESS_ROLES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "access/request.h"

#define ROLES_DEFAULT_PATH "/etc/sealtrail/roles"
#define ROLES_MAX_NAME 64
#define ROLES_MAX 1024

struct roles_member {
	enum access_role role;
	bool group;
	char name[ROLES_MAX_NAME];
};

struct roles {
	struct roles_member *m;
	unsigned n;
};

/*
 * Parse the text of a roles file; on a bad line, -EINVAL and err (at least
 * 256 bytes) says "FILE:LINE: why".
 */
int roles_parse(struct roles *r, const char *text, size_t len, const char *file, char *err);
/*
 * Read and parse path. An absent file is no roles (only root); a file not
 * owned by root or writable by others is refused (-EPERM), so that nobody
 * but root can grant a role.
 */
int roles_load(struct roles *r, const char *path, char *err);
void roles_free(struct roles *r);

/*
 * The role of uid (with gid, its primary group as the kernel saw it) and
 * its user name (or "uid N" without a passwd entry) in user.
 */
enum access_role roles_lookup(const struct roles *r, uid_t uid, gid_t gid, char *user, size_t size);

#endif
