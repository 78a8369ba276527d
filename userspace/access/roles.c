/* The roles file: parsing it and finding a caller's role (roles.h). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/roles.h"

#define ROLES_MAX_FILE (1u << 20)
#define MAX_GROUPS 1024

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.' || c == '$';
}

static const char *trim(const char *s, const char *end, const char **out_end)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	*out_end = end;
	return s;
}

static int add_member(struct roles *r, enum access_role role, const char *s, const char *end,
		      const char *file, unsigned line, char *err)
{
	struct roles_member *m, *grown;
	bool group = s < end && *s == '@';

	if (group)
		s++;
	if (s == end) {
		snprintf(err, 256, "%s:%u: empty member (a user name or @group between commas)",
			 file, line);
		return -EINVAL;
	}
	if (end - s >= ROLES_MAX_NAME) {
		snprintf(err, 256, "%s:%u: name longer than %d characters", file, line,
			 ROLES_MAX_NAME - 1);
		return -EINVAL;
	}
	for (const char *c = s; c < end; c++) {
		if (!name_char(*c)) {
			snprintf(err, 256, "%s:%u: '%.*s' is not a user name or @group", file, line,
				 (int)(end - s), s);
			return -EINVAL;
		}
	}
	if (r->n == ROLES_MAX) {
		snprintf(err, 256, "%s:%u: more than %d members", file, line, ROLES_MAX);
		return -EINVAL;
	}
	grown = realloc(r->m, (r->n + 1) * sizeof(*r->m));
	if (!grown)
		return -ENOMEM;
	r->m = grown;
	m = &r->m[r->n++];
	m->role = role;
	m->group = group;
	memcpy(m->name, s, end - s);
	m->name[end - s] = 0;
	return 0;
}

static int parse_line(struct roles *r, const char *s, const char *end, const char *file,
		      unsigned line, char *err)
{
	const char *hash = memchr(s, '#', end - s), *colon, *e;
	enum access_role role;

	if (hash)
		end = hash;
	s = trim(s, end, &end);
	if (s == end)
		return 0;
	colon = memchr(s, ':', end - s);
	if (!colon) {
		snprintf(err, 256, "%s:%u: expected \"ROLE: member, ...\" (ROLE auditor or admin)",
			 file, line);
		return -EINVAL;
	}
	trim(s, colon, &e);
	if (e - s == 7 && !memcmp(s, "auditor", 7)) {
		role = ROLE_AUDITOR;
	} else if (e - s == 5 && !memcmp(s, "admin", 5)) {
		role = ROLE_ADMIN;
	} else {
		snprintf(err, 256, "%s:%u: unknown role '%.*s' (auditor or admin)", file, line,
			 (int)(e - s) > 40 ? 40 : (int)(e - s), s);
		return -EINVAL;
	}
	s = colon + 1;
	if (trim(s, end, &e) == e)
		return 0; /* a role with nobody in it */
	while (s <= end) {
		const char *comma = memchr(s, ',', end - s), *stop = comma ? comma : end, *me;
		const char *m = trim(s, stop, &me);
		int err2 = add_member(r, role, m, me, file, line, err);

		if (err2)
			return err2;
		if (!comma)
			break;
		s = comma + 1;
	}
	return 0;
}

int roles_parse(struct roles *r, const char *text, size_t len, const char *file, char *err)
{
	const char *p = text, *end = text + len;
	unsigned line = 0;

	memset(r, 0, sizeof(*r));
	while (p < end) {
		const char *nl = memchr(p, '\n', end - p), *stop = nl ? nl : end;
		int e;

		line++;
		if (memchr(p, 0, stop - p)) {
			snprintf(err, 256, "%s:%u: NUL byte in the line", file, line);
			roles_free(r);
			return -EINVAL;
		}
		e = parse_line(r, p, stop, file, line, err);
		if (e) {
			roles_free(r);
			return e;
		}
		p = nl ? nl + 1 : end;
	}
	return 0;
}

int roles_load(struct roles *r, const char *path, char *err)
{
	struct stat sb;
	char *text = NULL;
	ssize_t got;
	size_t len = 0;
	int fd, e;

	memset(r, 0, sizeof(*r));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0) {
		e = -errno;
		snprintf(err, 256, "%s: %s", path, strerror(errno));
		return e;
	}
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode) || sb.st_uid != 0 || (sb.st_mode & 022) ||
	    sb.st_size > ROLES_MAX_FILE) {
		snprintf(err, 256,
			 "%s: must be a regular file of at most 1 MiB owned by root and not"
			 " writable by group or others",
			 path);
		close(fd);
		return -EPERM;
	}
	text = malloc(sb.st_size + 1);
	if (!text) {
		close(fd);
		return -ENOMEM;
	}
	while (len < (size_t)sb.st_size && (got = read(fd, text + len, sb.st_size - len)) > 0)
		len += got;
	close(fd);
	e = roles_parse(r, text, len, path, err);
	free(text);
	return e;
}

void roles_free(struct roles *r)
{
	free(r->m);
	memset(r, 0, sizeof(*r));
}

static bool in_group(const char *name, const gid_t *groups, int ngroups)
{
	struct group gr, *res = NULL;
	char sbuf[16384];

	if (getgrnam_r(name, &gr, sbuf, sizeof(sbuf), &res) || !res)
		return false;
	for (int i = 0; i < ngroups; i++)
		if (groups[i] == res->gr_gid)
			return true;
	return false;
}

enum access_role roles_lookup(const struct roles *r, uid_t uid, gid_t gid, char *user, size_t size)
{
	struct passwd pw, *res = NULL;
	char sbuf[16384];
	gid_t groups[MAX_GROUPS];
	int ngroups = 1;
	enum access_role best = ROLE_NONE;

	groups[0] = gid;
	if (!getpwuid_r(uid, &pw, sbuf, sizeof(sbuf), &res) && res) {
		snprintf(user, size, "%s", res->pw_name);
		ngroups = MAX_GROUPS - 1;
		if (getgrouplist(res->pw_name, res->pw_gid, groups + 1, &ngroups) < 0)
			ngroups = MAX_GROUPS - 1; /* more than we look at: the first ones */
		ngroups++;
	} else {
		snprintf(user, size, "uid %u", (unsigned)uid);
		res = NULL;
	}
	if (uid == 0)
		return ROLE_ADMIN;
	for (unsigned i = 0; i < r->n; i++) {
		const struct roles_member *m = &r->m[i];

		if (m->role <= best)
			continue;
		if (m->group ? in_group(m->name, groups, ngroups)
			     : res && !strcmp(m->name, res->pw_name))
			best = m->role;
	}
	return best;
}
