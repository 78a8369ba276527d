/*
 * Access control pieces the daemon relies on: the roles file parser and
 * lookup, the request frame parser (untrusted bytes from the socket), and
 * which arguments may be run over the socket.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/request.h"
#include "access/roles.h"
#include "store/record.h"
#include "test.h"

static int parse(struct roles *r, const char *text, char *err)
{
	return roles_parse(r, text, strlen(text), "roles", err);
}

TEST(roles_file_users_groups_comments)
{
	char err[256] = "";
	struct roles r;

	if (!ASSERT_OK(parse(&r,
			     "# who reads the recordings\n"
			     "\n"
			     "auditor: alice, bob ,@auditors   # the audit team\n"
			     "  admin :carol,@wheel\r\n"
			     "auditor:\n"
			     "auditor: dave",
			     err),
		       err))
		return;
	ASSERT_EQ(r.n, 6, "members");
	ASSERT_STREQ(r.m[0].name, "alice", "first");
	ASSERT_EQ(r.m[0].role, ROLE_AUDITOR, "alice's role");
	ASSERT_STREQ(r.m[1].name, "bob", "spaces around a name");
	ASSERT_TRUE(r.m[2].group, "@auditors is a group");
	ASSERT_STREQ(r.m[2].name, "auditors", "group name without @");
	ASSERT_EQ(r.m[3].role, ROLE_ADMIN, "carol's role");
	ASSERT_STREQ(r.m[4].name, "wheel", "CRLF stripped");
	ASSERT_STREQ(r.m[5].name, "dave", "last line without newline");
	roles_free(&r);
}

TEST(roles_file_bad_lines_name_file_and_line)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
	    {"auditor: alice\nreader: bob\n", "roles:2: unknown role 'reader'"},
	    {"\n\nalice, bob\n", "roles:3: expected \"ROLE: member, ...\""},
	    {"admin: carol,,dave\n", "roles:1: empty member"},
	    {"admin: carol,\n", "roles:1: empty member"},
	    {"auditor: al ice\n", "roles:1: 'al ice' is not a user name or @group"},
	    {"auditor: @\n", "roles:1: empty member"},
	    {"auditor: ../../etc\n", "roles:1: '../../etc'"},
	    {"auditor: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	     "roles:1: name longer than 63"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		struct roles r;

		ASSERT_EQ(parse(&r, cases[i].text, err), -EINVAL, cases[i].text);
		ASSERT_EQ(strncmp(err, cases[i].want, strlen(cases[i].want)), 0, err);
		ASSERT_EQ(r.n, 0, "nothing kept from a bad file");
	}
}

TEST(roles_file_absent_is_root_only_and_must_be_roots)
{
	char err[256] = "";
	struct roles r;
	FILE *f;

	ASSERT_OK(roles_load(&r, test_path("absent"), err), "an absent file is no roles");
	ASSERT_EQ(r.n, 0, "no members");
	f = fopen(test_path("roles"), "w");
	if (!ASSERT_NOT_NULL(f, "create roles"))
		return;
	fputs("auditor: nobody\n", f);
	fclose(f);
	chmod(test_path("roles"), 0644);
	if (geteuid() == 0) {
		ASSERT_OK(roles_load(&r, test_path("roles"), err), err);
		ASSERT_EQ(r.n, 1, "one member");
		roles_free(&r);
	}
	chmod(test_path("roles"), 0666);
	ASSERT_EQ(roles_load(&r, test_path("roles"), err), -EPERM, "world-writable is refused");
	ASSERT_TRUE(strstr(err, "not writable by group or others") != NULL, err);
}

TEST(roles_lookup_by_user_group_and_root)
{
	char err[256] = "", user[64];
	struct passwd *pw = getpwnam("nobody");
	struct group *gr;
	char text[256];
	struct roles r;

	ASSERT_OK(parse(&r, "", err), "empty");
	ASSERT_EQ(roles_lookup(&r, 0, 0, user, sizeof(user)), ROLE_ADMIN, "root is admin");
	ASSERT_STREQ(user, "root", "root's name");
	ASSERT_EQ(roles_lookup(&r, 4000123, 4000123, user, sizeof(user)), ROLE_NONE, "unknown uid");
	ASSERT_STREQ(user, "uid 4000123", "a uid without a passwd entry");
	roles_free(&r);
	if (!pw)
		return; /* no nobody: nothing more to look up */
	ASSERT_OK(parse(&r, "auditor: nobody\nadmin: somebodyelse\n", err), err);
	ASSERT_EQ(roles_lookup(&r, pw->pw_uid, pw->pw_gid, user, sizeof(user)), ROLE_AUDITOR,
		  "by name");
	ASSERT_STREQ(user, "nobody", "name");
	roles_free(&r);
	gr = getgrgid(pw->pw_gid);
	if (!gr)
		return;
	snprintf(text, sizeof(text), "auditor: someone\nadmin: @%s\n", gr->gr_name);
	ASSERT_OK(parse(&r, text, err), err);
	ASSERT_EQ(roles_lookup(&r, pw->pw_uid, pw->pw_gid, user, sizeof(user)), ROLE_ADMIN,
		  "by primary group");
	roles_free(&r);
	/* the kernel's gid of the caller counts even if passwd says otherwise */
	ASSERT_OK(parse(&r, "auditor: @root\n", err), err);
	ASSERT_EQ(roles_lookup(&r, 4000123, 0, user, sizeof(user)), ROLE_AUDITOR,
		  "by SO_PEERCRED gid");
	roles_free(&r);
}

static int feed_all(struct req_parser *p, const struct buf *b, size_t step)
{
	int r = 0;

	for (size_t off = 0; off < b->len; off += step) {
		size_t n = b->len - off < step ? b->len - off : step;

		r = req_feed(p, b->data + off, n);
		if (r < 0 || (r == 1 && off + n < b->len))
			return r;
	}
	return r;
}

TEST(request_frame_round_trip_in_any_pieces)
{
	char *argv[] = {"--json", "export", "0123abcd", "--format", "raw", ""};
	struct buf b = {0};

	if (!ASSERT_OK(req_encode(&b, 6, argv), "encode"))
		return;
	for (size_t step = 1; step <= b.len; step++) {
		struct req_parser p = {0};

		ASSERT_EQ(feed_all(&p, &b, step), 1, "complete");
		ASSERT_EQ(p.argc, 6, "argc");
		for (int i = 0; i < 6 && i < p.argc; i++)
			ASSERT_STREQ(p.argv[i], argv[i], "argument");
		ASSERT_TRUE(p.argv[p.argc] == NULL, "argv ends with NULL");
		ASSERT_EQ(req_feed(&p, (const uint8_t *)"x", 1), -EBADMSG, "a byte after it");
		req_free(&p);
	}
	buf_free(&b);
}

TEST(request_frame_rejects_bad_bytes)
{
	static const struct {
		const char *what;
		uint8_t bytes[16];
		size_t len;
		int want;
	} cases[] = {
	    {"too long", {0x00, 0x01, 0x00, 0x01}, 4, -EBADMSG},
	    {"empty body", {0, 0, 0, 0}, 4, -EBADMSG},
	    {"no arguments", {0, 0, 0, 2, 0, 0}, 6, -EBADMSG},
	    {"65 arguments", {0, 0, 0, 2, 0, 65}, 6, -EBADMSG},
	    {"argument past the end", {0, 0, 0, 5, 0, 1, 0, 2, 'a'}, 9, -EBADMSG},
	    {"bytes after the last argument", {0, 0, 0, 6, 0, 1, 0, 1, 'a', 'b'}, 10, -EBADMSG},
	    {"NUL in an argument", {0, 0, 0, 5, 0, 1, 0, 1, 0}, 9, -EBADMSG},
	    {"length of an argument cut", {0, 0, 0, 3, 0, 1, 0}, 7, -EBADMSG},
	    {"unfinished", {0, 0, 0, 5, 0, 1, 0, 1}, 8, 0},
	    {"one empty argument", {0, 0, 0, 4, 0, 1, 0, 0}, 8, 1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct req_parser p = {0};
		int r = req_feed(&p, cases[i].bytes, cases[i].len);

		ASSERT_EQ(r, cases[i].want, cases[i].what);
		if (r < 0)
			ASSERT_TRUE(p.err[0] != 0, "says why");
		req_free(&p);
	}
}

TEST(request_limits_on_encode)
{
	char *many[REQ_MAX_ARGS + 1];
	char big[REQ_MAX_ARG + 2];
	char *one[] = {big};
	struct buf b = {0};

	for (int i = 0; i <= REQ_MAX_ARGS; i++)
		many[i] = "x";
	ASSERT_EQ(req_encode(&b, REQ_MAX_ARGS + 1, many), -E2BIG, "65 arguments");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	ASSERT_EQ(req_encode(&b, 1, one), -E2BIG, "an argument over 4096 bytes");
	buf_free(&b);
}

TEST(access_argv_policy)
{
	static const struct {
		const char *args[5];
		int want;
		enum access_role role;
		const char *why;
	} cases[] = {
	    {{"sessions"}, 0, ROLE_AUDITOR, NULL},
	    {{"--json", "export", "abcd"}, 0, ROLE_AUDITOR, NULL},
	    {{"replay", "abcd", "--speed", "0"}, 0, ROLE_AUDITOR, NULL},
	    {{"verify"}, 0, ROLE_ADMIN, NULL},
	    {{"access-log", "--since", "1h"}, 0, ROLE_ADMIN, NULL},
	    {{"keys"}, 0, ROLE_ADMIN, NULL},
	    {{"--json", "config"}, 0, ROLE_ADMIN, NULL},
	    {{"sessions", "--store", "/tmp/x"}, -EPERM, 0, "option --store"},
	    {{"sessions", "--store=/tmp/x"}, -EPERM, 0, "option --store"},
	    {{"sessions", "--sto", "/tmp/x"}, -EPERM, 0, "option --store"},
	    {{"export", "abcd", "-o", "/etc/passwd"}, -EPERM, 0, "option -o"},
	    {{"export", "abcd", "--outp=/etc/x"}, -EPERM, 0, "option --output"},
	    {{"export", "abcd", "-o/etc/x"}, -EPERM, 0, "option -o/etc/x"},
	    {{"checkpoint", "--decode", "/etc/shadow"}, -EPERM, 0, "option --decode"},
	    {{"verify", "--against", "/etc/shadow"}, -EPERM, 0, "option --against"},
	    /* a file the client opened, passed as stdin */
	    {{"verify", "--against", "-"}, 0, ROLE_ADMIN, NULL},
	    {{"verify", "--against=-", "--json"}, 0, ROLE_ADMIN, NULL},
	    {{"checkpoint", "--decode", "-"}, 0, ROLE_AUDITOR, NULL},
	    {{"verify", "--ag", "-"}, -EPERM, 0, "option --against"},
	    {{"verify", "--against=/x"}, -EPERM, 0, "option --against"},
	    {{"verify", "--against"}, -EPERM, 0, "option --against"},
	    {{"verify", "--against", "-", "--store=/x"}, -EPERM, 0, "option --store"},
	    {{"events", "--auditor-key", "k"}, -EPERM, 0, "option --auditor-key"},
	    {{"--store", "/x", "sessions"}, -EPERM, 0, "option --store before"},
	    {{"auditor-keygen", "--out", "/x"}, -EPERM, 0, "command auditor-keygen"},
	    {{"rm"}, -EPERM, 0, "command rm"},
	    {{"--json"}, -EPERM, 0, "no command"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char why[160] = "";
		const char *cmd = NULL;
		enum access_role role = ROLE_NONE;
		int argc = 0;

		while (argc < 5 && cases[i].args[argc])
			argc++;
		ASSERT_EQ(access_check_argv(argc, (char *const *)cases[i].args, &cmd, &role, why),
			  cases[i].want, cases[i].args[argc - 1]);
		if (cases[i].want == 0)
			ASSERT_EQ(role, cases[i].role, cmd);
		else
			ASSERT_EQ(strncmp(why, cases[i].why, strlen(cases[i].why)), 0, why);
	}
}

TEST(access_record_type_and_tags_have_names)
{
	ASSERT_STREQ(rec_type_name(REC_ACCESS), "access", "type name");
	ASSERT_STREQ(rec_tag_name(TAG_DECISION), "decision", "decision tag");
	ASSERT_STREQ(rec_tag_name(TAG_ROLE), "role", "role tag");
	ASSERT_EQ(REC_ACCESS, 16, "type number is part of the format");
}
