// SPDX-License-Identifier: MIT
/*
 * slimfs bundle: an OCI runtime bundle whose root is a slimfs mount.
 *
 *   DIR/rootfs       the image, mounted read-only by `slimfs mount` (run as a
 *                    child process of this one: /proc/self/exe mount ...)
 *   DIR/config.json  an OCI runtime spec derived from the image's own config
 *                    (Entrypoint, Cmd, Env, WorkingDir, User), with the
 *                    defaults of `runc spec` for the rest
 *
 * `slimfs bundle --remove DIR` unmounts DIR/rootfs, waits for the daemon to
 * exit and removes the bundle.
 */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include <jansson.h>

#include "cmds.h"
#include "image.h"
#include "slimfs/util.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* /etc/passwd or /etc/group larger than this is refused (hostile image). */
#define ACCOUNT_FILE_MAX (8u << 20)
#define SYMLINK_MAX	 40
#define GROUPS_MAX	 1024
/* How long --remove waits for the daemon to exit after the unmount. */
#define DAEMON_EXIT_TIMEOUT_MS 30000

/* json_decrefp() is jansson's own. */
#define _cleanup_json_ _cleanup_(json_decrefp)

static inline void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

static void bundle_usage(FILE *f)
{
	fprintf(f,
		"usage: slimfs bundle [options] IMAGE DIR [-- ARGS...]\n"
		"       slimfs bundle --remove [--lazy] DIR\n"
		"       slimfs bundle rm [--lazy] DIR\n"
		"\n"
		"Makes DIR an OCI runtime bundle for runc or crun: DIR/rootfs is IMAGE\n"
		"mounted read-only in the background (slimfs mount), and DIR/config.json is\n"
		"an OCI runtime spec (1.0.2) derived from the image's config:\n"
		"  process.args  Entrypoint + Cmd (ARGS after '--' replace them; /bin/sh\n"
		"                when the image has neither)\n"
		"  process.env   Env (PATH added when absent)\n"
		"  process.cwd   WorkingDir, or /\n"
		"  process.user  User: uid, uid:gid, name or name:group, names resolved\n"
		"                through the image's own /etc/passwd and /etc/group\n"
		"and the defaults of 'runc spec': read-only root, no terminal, proc, dev,\n"
		"devpts, shm, mqueue, sysfs and cgroup (read-only) mounts, pid, ipc, uts,\n"
		"mount and network (loopback only) namespaces, a minimal capability set,\n"
		"masked and read-only /proc and /sys paths. DIR must not exist or be empty.\n"
		"Then: runc run --bundle DIR ID.\n"
		"\n"
		"options:\n"
		"      --view NAME      view to mount (default: the image's default view)\n"
		"      --cache DIR      chunk cache directory (passed to slimfs mount)\n"
		"  -o, --options OPTS   FUSE mount options (passed to slimfs mount); as root,\n"
		"                       allow_other,default_permissions are added so that a\n"
		"                       non-root container user can read its files\n"
		"  -u, --user USER      run as USER instead of the image's User (same forms)\n"
		"      --hostname NAME  container host name (default: slimfs)\n"
		"  -t, --terminal       process.terminal true (for runc run on a TTY)\n"
		"      --remove DIR     unmount DIR/rootfs, wait until its daemon has exited,\n"
		"                       remove DIR/config.json, DIR/rootfs and DIR\n"
		"      --lazy           with --remove: detach a busy mount (MNT_DETACH), and do\n"
		"                       not wait for the daemon\n"
		"  -q, --quiet          print errors only\n"
		"  -h, --help           this help\n"
		"\n"
		"Exit status: 0 success, 1 failure, 2 usage error.\n");
}

/* ---- reading files of the image ---- */

/*
 * Resolves path in the image, following symlinks in every component (at most
 * SYMLINK_MAX), relative ones from the directory that holds them. Views are
 * not applied: the caller decides what to do with a hidden file.
 */
static int resolve_follow(const struct slimfs_index *idx, const char *path, uint32_t *out)
{
	_cleanup_free_ char *rest = strdup(path);
	unsigned links = 0;
	uint32_t cur = 0;
	size_t pos = 0;

	if (!rest)
		return -ENOMEM;
	for (;;) {
		struct slimfs_inode dir, ino;
		const char *name;
		uint32_t next;
		size_t n;
		int r;

		while (rest[pos] == '/')
			pos++;
		if (!rest[pos])
			break;
		name = rest + pos;
		n = strcspn(name, "/");
		r = slimfs_index_inode(idx, cur, &dir);
		if (r < 0)
			return r;
		if (n == 1 && name[0] == '.') {
			pos += n;
			continue;
		}
		if (n == 2 && name[0] == '.' && name[1] == '.') {
			cur = cur == 0 ? 0 : dir.parent;
			pos += n;
			continue;
		}
		r = slimfs_index_lookup(idx, &dir, name, n, &next);
		if (r < 0)
			return r;
		r = slimfs_index_inode(idx, next, &ino);
		if (r < 0)
			return r;
		if (S_ISLNK(ino.mode)) {
			size_t tail = strlen(name + n);
			char *nrest;

			if (++links > SYMLINK_MAX)
				return -ELOOP;
			nrest = malloc((size_t)ino.target_len + tail + 2);
			if (!nrest)
				return -ENOMEM;
			memcpy(nrest, ino.target, ino.target_len);
			nrest[ino.target_len] = '/';
			memcpy(nrest + ino.target_len + 1, name + n, tail + 1);
			if (ino.target_len > 0 && ino.target[0] == '/')
				cur = 0;
			free(rest);
			rest = nrest;
			pos = 0;
			continue;
		}
		cur = next;
		pos += n;
	}
	*out = cur;
	return 0;
}

/* Reads a whole regular file of the image (at most max bytes) into a NUL-terminated buffer. */
static int image_read_file(struct slimfs_image *img, const char *path, size_t max, char **out,
			   size_t *out_len)
{
	struct slimfs_reader rd;
	struct slimfs_inode ino;
	_cleanup_free_ char *buf = NULL;
	size_t done = 0;
	uint32_t id;
	int r;

	r = resolve_follow(img->idx, path, &id);
	if (r < 0)
		return r;
	r = slimfs_index_inode(img->idx, id, &ino);
	if (r < 0)
		return r;
	if (!S_ISREG(ino.mode))
		return -EINVAL;
	if (ino.size > max)
		return -EFBIG;
	buf = malloc((size_t)ino.size + 1);
	if (!buf)
		return -ENOMEM;
	r = slimfs_reader_init(&rd, img);
	if (r < 0)
		return r;
	while (done < ino.size) {
		ssize_t n =
			slimfs_reader_pread(&rd, &ino, buf + done, (size_t)ino.size - done, done);
		if (n < 0) {
			r = (int)n;
			break;
		}
		if (n == 0) {
			r = -EIO;
			break;
		}
		done += (size_t)n;
	}
	slimfs_reader_fini(&rd);
	if (r < 0)
		return r;
	buf[done] = '\0';
	*out = steal_ptr(&buf);
	*out_len = done;
	return 0;
}

/* ---- users and groups ---- */

/* Decimal id, 0..UINT32_MAX - 1 (-1 is "no id"). 0 or -EINVAL. */
static int parse_id(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v >= UINT32_MAX)
			return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

/* Splits line at ':' into at most max fields, in place; returns the field count. */
static int split_fields(char *line, char **f, int max)
{
	int n = 0;

	while (n < max) {
		char *c = strchr(line, ':');

		f[n++] = line;
		if (!c)
			break;
		*c = '\0';
		line = c + 1;
	}
	return n;
}

/* Calls fn for every well-formed line of an /etc/passwd or /etc/group text; stops when fn
 * returns non-zero and returns that. buf is modified. */
static int for_each_account(char *buf, int nfields, int (*fn)(char **f, void *ud), void *ud)
{
	char *line = buf;

	while (line && *line) {
		char *nl = strchr(line, '\n'), *f[8];
		int r;

		if (nl)
			*nl = '\0';
		if (*line != '#' && *line != '+' && *line != '-' &&
		    split_fields(line, f, nfields) == nfields) {
			r = fn(f, ud);
			if (r)
				return r;
		}
		line = nl ? nl + 1 : NULL;
	}
	return 0;
}

struct user_query {
	const char *name; /* match by name, or by uid when NULL */
	uint32_t uid;
	/* result */
	uint32_t found_uid, found_gid;
	char name_buf[256];
};

static int match_passwd(char **f, void *ud)
{
	struct user_query *q = ud;
	uint32_t uid, gid;

	if (parse_id(f[2], &uid) < 0 || parse_id(f[3], &gid) < 0)
		return 0;
	if (q->name ? strcmp(f[0], q->name) != 0 : uid != q->uid)
		return 0;
	q->found_uid = uid;
	q->found_gid = gid;
	snprintf(q->name_buf, sizeof(q->name_buf), "%s", f[0]);
	return 1;
}

struct group_query {
	const char *name; /* group to find by name, or NULL */
	uint32_t gid;
	const char *member; /* user whose groups to collect, or NULL */
	uint32_t primary;
	uint32_t gids[GROUPS_MAX];
	size_t ngids;
};

static int match_group(char **f, void *ud)
{
	struct group_query *q = ud;
	uint32_t gid;

	if (parse_id(f[2], &gid) < 0)
		return 0;
	if (q->name) {
		if (strcmp(f[0], q->name) != 0)
			return 0;
		q->gid = gid;
		return 1;
	}
	for (char *save, *m = strtok_r(f[3], ",", &save); m; m = strtok_r(NULL, ",", &save)) {
		if (strcmp(m, q->member) != 0)
			continue;
		if (gid == q->primary || q->ngids == GROUPS_MAX)
			break;
		for (size_t i = 0; i < q->ngids; i++)
			if (q->gids[i] == gid)
				return 0;
		q->gids[q->ngids++] = gid;
		break;
	}
	return 0;
}

/* Reads an account file of the image; a missing one reads as empty. */
static int read_account_file(struct slimfs_image *img, const char *path, char **out)
{
	size_t len;
	int r;

	r = image_read_file(img, path, ACCOUNT_FILE_MAX, out, &len);
	if (r == -ENOENT || r == -ENOTDIR) {
		*out = strdup("");
		return *out ? 0 : -ENOMEM;
	}
	if (r < 0)
		return log_error_errno(r, "'%s': cannot read %s of the image", img->source, path);
	return 0;
}

/*
 * Resolves the config's User ("", "uid", "uid:gid", "name", "name:group",
 * "uid:group", "name:gid") the way runc does: a numeric user needs no
 * /etc/passwd, and supplementary groups come from /etc/group only when no
 * group was given and the user has a passwd entry.
 */
static int resolve_user(struct slimfs_image *img, const char *user, json_t **out)
{
	_cleanup_free_ char *copy = strdup(user ? user : "");
	_cleanup_free_ char *passwd = NULL, *group = NULL;
	_cleanup_json_ json_t *j = NULL, *extra = NULL;
	struct user_query uq = {0};
	_cleanup_free_ struct group_query *gq = calloc(1, sizeof(*gq));
	const char *ustr, *gstr;
	uint32_t uid = 0, gid = 0;
	bool found = false;
	char *colon;
	int r;

	if (!copy || !gq)
		return -ENOMEM;
	colon = strchr(copy, ':');
	if (colon)
		*colon = '\0';
	ustr = copy;
	gstr = colon ? colon + 1 : NULL;

	if (*ustr) {
		r = read_account_file(img, "/etc/passwd", &passwd);
		if (r < 0)
			return r;
		if (parse_id(ustr, &uid) == 0) {
			uq.uid = uid;
		} else {
			if (strchr(ustr, '\n')) {
				log_error("'%s' is not a user name", ustr);
				return -EINVAL;
			}
			uq.name = ustr;
		}
		found = for_each_account(passwd, 7, match_passwd, &uq) == 1;
		if (!found && uq.name) {
			log_error("user '%s' is not in the image's /etc/passwd", ustr);
			return -ENOENT;
		}
		if (found) {
			uid = uq.found_uid;
			gid = uq.found_gid;
		}
	}
	if (gstr && *gstr) {
		if (parse_id(gstr, &gid) < 0) {
			r = read_account_file(img, "/etc/group", &group);
			if (r < 0)
				return r;
			gq->name = gstr;
			if (strchr(gstr, '\n') ||
			    for_each_account(group, 4, match_group, gq) != 1) {
				log_error("group '%s' is not in the image's "
					  "/etc/group",
					  gstr);
				return -ENOENT;
			}
			gid = gq->gid;
		}
	} else if (found) {
		r = read_account_file(img, "/etc/group", &group);
		if (r < 0)
			return r;
		gq->member = uq.name_buf;
		gq->primary = gid;
		for_each_account(group, 4, match_group, gq);
	}

	j = json_pack("{s:I, s:I}", "uid", (json_int_t)uid, "gid", (json_int_t)gid);
	if (!j)
		return -ENOMEM;
	if (gq->ngids) {
		extra = json_array();
		if (!extra)
			return -ENOMEM;
		for (size_t i = 0; i < gq->ngids; i++)
			if (json_array_append_new(extra, json_integer(gq->gids[i])) < 0)
				return -ENOMEM;
		if (json_object_set(j, "additionalGids", extra) < 0)
			return -ENOMEM;
	}
	*out = steal_ptr(&j);
	return 0;
}

/* ---- the image config ---- */

/* The "config" object of an OCI/docker image config (a new reference; an empty object
 * when the image has none). */
static int image_config(struct slimfs_image *img, json_t **out)
{
	const struct slimfs_info *info = slimfs_index_info(img->idx);
	_cleanup_json_ json_t *root = NULL;
	json_error_t err;
	json_t *c;

	if (!info->config || !info->config_len) {
		*out = json_object();
		return *out ? 0 : -ENOMEM;
	}
	root = json_loadb(info->config, info->config_len, 0, &err);
	if (!root) {
		log_error("'%s': the image config is not valid JSON: %s (line %d, column %d)",
			  img->source, err.text, err.line, err.column);
		return -EBADMSG;
	}
	if (!json_is_object(root)) {
		log_error("'%s': the image config is not a JSON object", img->source);
		return -EBADMSG;
	}
	c = json_object_get(root, "config");
	if (json_is_object(c)) {
		*out = json_incref(c);
		return 0;
	}
	if (c && !json_is_null(c)) {
		log_error("'%s': the image config's 'config' is not an object", img->source);
		return -EBADMSG;
	}
	/* Some tools store the inner object alone. */
	if (json_object_get(root, "Entrypoint") || json_object_get(root, "Cmd") ||
	    json_object_get(root, "Env") || json_object_get(root, "User") ||
	    json_object_get(root, "WorkingDir")) {
		*out = json_incref(root);
		return 0;
	}
	*out = json_object();
	return *out ? 0 : -ENOMEM;
}

/* Appends the strings of cfg[key] (absent or null: nothing) to arr. */
static int append_strings(json_t *arr, json_t *cfg, const char *key)
{
	json_t *v = json_object_get(cfg, key), *s;
	size_t i;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v)) {
		log_error("image config: '%s' is not an array of strings", key);
		return -EBADMSG;
	}
	json_array_foreach(v, i, s)
	{
		if (!json_is_string(s)) {
			log_error("image config: '%s'[%zu] is not a string", key, i);
			return -EBADMSG;
		}
		if (json_array_append_new(
			    arr, json_stringn(json_string_value(s), json_string_length(s))) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* Optional string member; NULL when absent or null. */
static int get_string(json_t *cfg, const char *key, const char **out)
{
	json_t *v = json_object_get(cfg, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		log_error("image config: '%s' is not a string", key);
		return -EBADMSG;
	}
	*out = json_string_value(v);
	return 0;
}

static json_t *string_array(const char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_string(v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *mount_entry(const char *dest, const char *type, const char *src,
			   const char *const *opts, size_t nopts)
{
	return json_pack("{s:s, s:s, s:s, s:o}", "destination", dest, "type", type, "source", src,
			 "options", string_array(opts, nopts));
}

static json_t *default_mounts(void)
{
	static const char *const dev[] = {"nosuid", "strictatime", "mode=755", "size=65536k"};
	static const char *const pts[] = {"nosuid",	   "noexec",	"newinstance",
					  "ptmxmode=0666", "mode=0620", "gid=5"};
	static const char *const shm[] = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"};
	static const char *const mq[] = {"nosuid", "noexec", "nodev"};
	static const char *const sys[] = {"nosuid", "noexec", "nodev", "ro"};
	static const char *const cg[] = {"nosuid", "noexec", "nodev", "relatime", "ro"};

	return json_pack("[{s:s, s:s, s:s}, o, o, o, o, o, o]", "destination", "/proc", "type",
			 "proc", "source", "proc",
			 mount_entry("/dev", "tmpfs", "tmpfs", dev, ARRAY_SIZE(dev)),
			 mount_entry("/dev/pts", "devpts", "devpts", pts, ARRAY_SIZE(pts)),
			 mount_entry("/dev/shm", "tmpfs", "shm", shm, ARRAY_SIZE(shm)),
			 mount_entry("/dev/mqueue", "mqueue", "mqueue", mq, ARRAY_SIZE(mq)),
			 mount_entry("/sys", "sysfs", "sysfs", sys, ARRAY_SIZE(sys)),
			 mount_entry("/sys/fs/cgroup", "cgroup", "cgroup", cg, ARRAY_SIZE(cg)));
}

static json_t *linux_section(void)
{
	static const char *const masked[] = {
		"/proc/acpi",	       "/proc/asound",	   "/proc/kcore",	"/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/sys/firmware",       "/proc/scsi",
	};
	static const char *const ro[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
					 "/proc/sysrq-trigger"};

	/* A network namespace without a path: runc and crun give it a loopback only. */
	return json_pack("{s:{s:[{s:b, s:s}]}, s:[{s:s}, {s:s}, {s:s}, {s:s}, {s:s}], s:o, s:o}",
			 "resources", "devices", "allow", 0, "access", "rwm", "namespaces", "type",
			 "pid", "type", "network", "type", "ipc", "type", "uts", "type", "mount",
			 "maskedPaths", string_array(masked, ARRAY_SIZE(masked)), "readonlyPaths",
			 string_array(ro, ARRAY_SIZE(ro)));
}

static json_t *capabilities(void)
{
	static const char *const caps[] = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"};

	return json_pack("{s:o, s:o, s:o, s:o}", "bounding", string_array(caps, ARRAY_SIZE(caps)),
			 "effective", string_array(caps, ARRAY_SIZE(caps)), "permitted",
			 string_array(caps, ARRAY_SIZE(caps)), "ambient",
			 string_array(caps, ARRAY_SIZE(caps)));
}

struct spec_opts {
	const char *hostname;
	const char *user; /* overrides the config's User, or NULL */
	bool terminal;
	char **args; /* override of process.args, or NULL */
	size_t nargs;
};

/* Warns when the program to run is missing from the mounted view (a minimal view that
 * forgot it is the classic surprise). */
static void check_program(struct slimfs_image *img, uint32_t view, const char *prog, json_t *env)
{
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	struct slimfs_inode ino;
	json_t *e;
	uint32_t id;
	size_t i;

	if (strchr(prog, '/')) {
		if (prog[0] != '/')
			return; /* relative to cwd: not worth guessing */
		if (resolve_follow(img->idx, prog, &id) < 0 ||
		    slimfs_index_inode(img->idx, id, &ino) < 0) {
			log_warn("'%s' is not in the image", prog);
			return;
		}
		if (!slimfs_inode_in_view(&ino, view))
			log_warn("'%s' is in the image but not in the mounted view "
				 "(--view full to debug)",
				 prog);
		return;
	}
	json_array_foreach(env, i, e)
	{
		const char *s = json_string_value(e);

		if (s && strncmp(s, "PATH=", 5) == 0)
			path = s + 5;
	}
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		_cleanup_free_ char *cand = NULL;

		if (n > 0 && asprintf(&cand, "/%.*s/%s", (int)n, p, prog) >= 0 &&
		    resolve_follow(img->idx, cand, &id) == 0 &&
		    slimfs_index_inode(img->idx, id, &ino) == 0 && S_ISREG(ino.mode)) {
			if (!slimfs_inode_in_view(&ino, view))
				log_warn("'%s' is in the image but not in the mounted view "
					 "(--view full to debug)",
					 cand);
			return;
		}
		p += n;
		if (*p == ':')
			p++;
	}
	log_warn("'%s' is not in the image's PATH (%s)", prog, path);
}

/* The whole runtime spec. */
static int make_spec(struct slimfs_image *img, uint32_t view, const struct spec_opts *so,
		     json_t **out)
{
	_cleanup_json_ json_t *cfg = NULL, *args = NULL, *env = NULL, *user = NULL, *spec = NULL;
	const char *cwd, *uname;
	_cleanup_free_ char *cwd_abs = NULL;
	bool has_path = false;
	json_t *e;
	size_t i;
	int r;

	r = image_config(img, &cfg);
	if (r < 0)
		return r;

	args = json_array();
	env = json_array();
	if (!args || !env)
		return -ENOMEM;
	if (so->args) {
		for (i = 0; i < so->nargs; i++)
			if (json_array_append_new(args, json_string(so->args[i])) < 0)
				return -ENOMEM;
	} else {
		r = append_strings(args, cfg, "Entrypoint");
		if (r < 0)
			return r;
		r = append_strings(args, cfg, "Cmd");
		if (r < 0)
			return r;
		if (json_array_size(args) == 0) {
			log_warn("the image config has no Entrypoint or Cmd: the container runs "
				 "/bin/sh");
			if (json_array_append_new(args, json_string("/bin/sh")) < 0)
				return -ENOMEM;
		}
	}
	if (!json_string_value(json_array_get(args, 0)) ||
	    !*json_string_value(json_array_get(args, 0))) {
		log_error("the program to run is an empty string");
		return -EINVAL;
	}

	r = append_strings(env, cfg, "Env");
	if (r < 0)
		return r;
	json_array_foreach(env, i, e)
	{
		if (strncmp(json_string_value(e), "PATH=", 5) == 0)
			has_path = true;
	}
	if (!has_path && json_array_append_new(env, json_string(DEFAULT_PATH)) < 0)
		return -ENOMEM;
	if (so->terminal && json_array_append_new(env, json_string("TERM=xterm")) < 0)
		return -ENOMEM;

	r = get_string(cfg, "WorkingDir", &cwd);
	if (r < 0)
		return r;
	if (!cwd || !*cwd)
		cwd = "/";
	if (cwd[0] != '/') {
		if (asprintf(&cwd_abs, "/%s", cwd) < 0)
			return -ENOMEM;
		cwd = cwd_abs;
	}

	r = get_string(cfg, "User", &uname);
	if (r < 0)
		return r;
	if (so->user)
		uname = so->user;
	r = resolve_user(img, uname, &user);
	if (r < 0)
		return r;

	check_program(img, view, json_string_value(json_array_get(args, 0)), env);

	spec = json_pack("{s:s, s:{s:b, s:O, s:O, s:O, s:s, s:o, s:[{s:s, s:i, s:i}], s:b}, "
			 "s:{s:s, s:b}, s:s, s:o, s:o}",
			 "ociVersion", "1.0.2", "process", "terminal", so->terminal, "user", user,
			 "args", args, "env", env, "cwd", cwd, "capabilities", capabilities(),
			 "rlimits", "type", "RLIMIT_NOFILE", "hard", 1024, "soft", 1024,
			 "noNewPrivileges", 1, "root", "path", "rootfs", "readonly", 1, "hostname",
			 so->hostname, "mounts", default_mounts(), "linux", linux_section());
	if (!spec)
		return -ENOMEM;
	*out = steal_ptr(&spec);
	return 0;
}

/* ---- the bundle directory ---- */

static int dir_is_empty(const char *path)
{
	_cleanup_(closedirp) DIR *d = opendir(path);
	struct dirent *de;

	if (!d)
		return -errno;
	errno = 0;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			return 0;
	return errno ? -errno : 1;
}

/* Writes config.json in dir through a temporary file, fsync and rename. */
static int write_config(const char *dir, json_t *spec)
{
	_cleanup_free_ char *text = json_dumps(spec, JSON_INDENT(2));
	_cleanup_free_ char *final = NULL;
	_cleanup_close_ int dfd = -1;
	size_t len;
	int r;

	if (!text)
		return -ENOMEM;
	if (asprintf(&final, "%s/config.json", dir) < 0)
		return -ENOMEM;
	len = strlen(text);
	text[len] = '\n'; /* the NUL becomes the final newline */
	r = slimfs_write_file_replace(final, text, len + 1, 0644);
	if (r < 0)
		return r;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);
	return 0;
}

/* Runs argv (path: exec this file; NULL: search PATH) and waits. Returns the exit status,
 * 128 + signal, or -errno when it could not run. */
static int run_wait(const char *path, const char *const argv[])
{
	int status, pipefd[2], err = 0;
	ssize_t n;
	pid_t pid;

	/* A close-on-exec pipe carries exec's errno back. */
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(pipefd[0]);
		close(pipefd[1]);
		return err;
	}
	if (pid == 0) {
		close(pipefd[0]);
		/* exec does not modify argv: the cast is the usual one */
		if (path)
			execv(path, (char *const *)argv);
		else
			execvp(argv[0], (char *const *)argv);
		err = errno;
		(void)!write(pipefd[1], &err, sizeof(err));
		_exit(127);
	}
	close(pipefd[1]);
	do
		n = read(pipefd[0], &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (n == (ssize_t)sizeof(err))
		return -err;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

/* Whether path (absolute, canonical) is a mount point, from /proc/self/mountinfo. */
static int is_mount_point(const char *path)
{
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int found = 0;

	if (!f)
		return -errno;
	while (!found && getline(&line, &cap, f) > 0) {
		/* id parent maj:min root MOUNTPOINT ...; octal escapes for space, tab, \n, \ */
		char *p = line, mp[PATH_MAX];
		size_t o = 0;

		for (int field = 0; field < 4 && p; field++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (!p)
			continue;
		while (*p && *p != ' ' && *p != '\n' && o < sizeof(mp) - 1) {
			if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' &&
			    p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
				mp[o++] =
					(char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
				p += 4;
			} else {
				mp[o++] = *p++;
			}
		}
		mp[o] = '\0';
		found = strcmp(mp, path) == 0;
	}
	fclose(f);
	return found;
}

/*
 * The daemons serving mountpoint: processes run as "... mount ... MOUNTPOINT" (the
 * mountpoint last, as bundle starts them) that hold /dev/fuse open.
 */
static size_t find_daemons(const char *mountpoint, pid_t *pids, size_t max)
{
	_cleanup_(closedirp) DIR *proc = opendir("/proc");
	struct dirent *de;
	size_t n = 0;

	if (!proc)
		return 0;
	while (n < max && (de = readdir(proc))) {
		char path[64], cmd[8192], link[64];
		_cleanup_(closedirp) DIR *fds = NULL;
		_cleanup_close_ int fd = -1;
		bool is_mount = false, has_fuse = false;
		const char *last = NULL;
		struct dirent *fe;
		ssize_t len;
		pid_t pid;
		char *end;

		pid = (pid_t)strtol(de->d_name, &end, 10);
		if (*end || pid <= 0 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, cmd, sizeof(cmd) - 1);
		if (len <= 0)
			continue;
		cmd[len] = '\0';
		for (char *a = cmd; a < cmd + len; a += strlen(a) + 1) {
			if (strcmp(a, "mount") == 0)
				is_mount = true;
			last = a;
		}
		if (!is_mount || !last || strcmp(last, mountpoint) != 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
		fds = opendir(path);
		while (fds && !has_fuse && (fe = readdir(fds))) {
			len = readlinkat(dirfd(fds), fe->d_name, link, sizeof(link) - 1);
			if (len > 0) {
				link[len] = '\0';
				has_fuse = strcmp(link, "/dev/fuse") == 0;
			}
		}
		if (has_fuse)
			pids[n++] = pid;
	}
	return n;
}

/* Waits until pid has exited; 0, or -ETIMEDOUT. */
static int wait_exit(pid_t pid, int timeout_ms)
{
	uint64_t deadline = slimfs_now_ns() + (uint64_t)timeout_ms * 1000000u;
	int pfd = -1;

	errno = ENOSYS;
#ifdef SYS_pidfd_open
	pfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
	if (pfd >= 0) {
		struct pollfd p = {.fd = pfd, .events = POLLIN};
		int r;

		do
			r = poll(&p, 1, timeout_ms);
		while (r < 0 && errno == EINTR);
		close(pfd);
		return r > 0 ? 0 : -ETIMEDOUT;
	}
	if (errno == ESRCH)
		return 0;
	while (kill(pid, 0) == 0 || errno != ESRCH) {
		if (slimfs_now_ns() > deadline)
			return -ETIMEDOUT;
		nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
	}
	return 0;
}

static int do_unmount(const char *mnt, bool lazy)
{
	const char *argv_lazy[] = {"fusermount3", "-u", "-z", "--", mnt, NULL};
	const char *argv_plain[] = {"fusermount3", "-u", "--", mnt, NULL};
	const char **argv = lazy ? argv_lazy : argv_plain;
	int r;

	if (geteuid() == 0) {
		if (umount2(mnt, lazy ? MNT_DETACH : 0) == 0)
			return 0;
		if (errno == EBUSY)
			return log_error_errno(-EBUSY,
					       "cannot unmount '%s' (is a container still "
					       "running? stop it, or use --lazy)",
					       mnt);
		if (errno != EPERM)
			return log_error_errno(-errno, "cannot unmount '%s'", mnt);
	}
	r = run_wait(NULL, argv);
	if (r < 0)
		return log_error_errno(r, "cannot run fusermount3");
	if (r != 0) {
		log_error("cannot unmount '%s': fusermount3 exited with %d", mnt, r);
		return -EIO;
	}
	return 0;
}

static int bundle_remove(const char *dir, bool lazy)
{
	_cleanup_free_ char *real = realpath(dir, NULL), *rootfs = NULL, *config = NULL;
	pid_t pids[16];
	size_t npids = 0;
	int r, mounted, ret = 0;

	if (!real)
		return log_error_errno(-errno, "cannot open '%s'", dir);
	if (asprintf(&rootfs, "%s/rootfs", real) < 0 ||
	    asprintf(&config, "%s/config.json", real) < 0)
		return -ENOMEM;
	if (access(config, F_OK) < 0 && access(rootfs, F_OK) < 0 && errno != ENOTCONN) {
		log_error("'%s' is not a slimfs bundle (no config.json, no rootfs)", dir);
		return -EINVAL;
	}

	mounted = is_mount_point(rootfs);
	if (mounted < 0)
		return log_error_errno(mounted, "cannot read /proc/self/mountinfo");
	if (mounted) {
		npids = find_daemons(rootfs, pids, ARRAY_SIZE(pids));
		r = do_unmount(rootfs, lazy);
		if (r < 0)
			return r;
		for (size_t i = 0; i < npids && !lazy; i++) {
			if (wait_exit(pids[i], DAEMON_EXIT_TIMEOUT_MS) < 0) {
				log_error("the daemon of '%s' (pid %d) is still running %d s after "
					  "the unmount",
					  rootfs, (int)pids[i], DAEMON_EXIT_TIMEOUT_MS / 1000);
				ret = -ETIMEDOUT;
			}
		}
	}
	if (unlink(config) < 0 && errno != ENOENT)
		return log_error_errno(-errno, "cannot remove '%s'", config);
	if (rmdir(rootfs) < 0 && errno != ENOENT) {
		if (errno == EBUSY)
			return log_error_errno(-EBUSY, "'%s' is still mounted", rootfs);
		return log_error_errno(-errno, "cannot remove '%s'", rootfs);
	}
	if (rmdir(real) < 0)
		return log_error_errno(-errno, "cannot remove '%s'%s", real,
				       errno == ENOTEMPTY ? " (it has files slimfs did not make)"
							  : "");
	return ret;
}

struct bundle_args {
	const char *view, *cache, *fuse_opts, *hostname, *user;
	bool terminal;
	char **args;
	size_t nargs;
};

static int mount_image(const char *image, const char *rootfs, const struct bundle_args *a)
{
	_cleanup_free_ char *opts = NULL, *abs_image = NULL;
	const char *argv[16];
	char self[PATH_MAX];
	ssize_t len;
	size_t n = 0;
	int r;

	/* A local image by absolute path: the daemon may change directory. */
	if (!strstr(image, "://")) {
		abs_image = realpath(image, NULL);
		if (abs_image)
			image = abs_image;
	}
	if (geteuid() == 0) {
		if (asprintf(&opts, "allow_other,default_permissions%s%s", a->fuse_opts ? "," : "",
			     a->fuse_opts ? a->fuse_opts : "") < 0)
			return -ENOMEM;
	} else if (a->fuse_opts) {
		opts = strdup(a->fuse_opts);
		if (!opts)
			return -ENOMEM;
	}
	argv[n++] = "slimfs";
	argv[n++] = "mount";
	if (a->view) {
		argv[n++] = "--view";
		argv[n++] = a->view;
	}
	if (a->cache) {
		argv[n++] = "--cache";
		argv[n++] = a->cache;
	}
	if (opts) {
		argv[n++] = "-o";
		argv[n++] = opts;
	}
	argv[n++] = "--";
	argv[n++] = image;
	argv[n++] = rootfs;
	argv[n] = NULL;
	/* This very binary, by its name when it still has one, so that ps shows "slimfs". */
	len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len > 0 && (size_t)len < sizeof(self) - 1) {
		self[len] = '\0';
		if (strstr(self, " (deleted)") || access(self, X_OK) < 0)
			strcpy(self, "/proc/self/exe");
	} else {
		strcpy(self, "/proc/self/exe");
	}
	r = run_wait(self, argv);
	if (r < 0)
		return log_error_errno(r, "cannot run slimfs mount");
	if (r != 0) {
		log_error("slimfs mount '%s' on '%s' failed (exit status %d)", image, rootfs, r);
		return -EIO;
	}
	r = slimfs_is_fuse(rootfs);
	if (r <= 0) {
		log_error("slimfs mount returned but '%s' is not a FUSE mount", rootfs);
		return r < 0 ? r : -EIO;
	}
	return 0;
}

static int bundle_create(const char *image, const char *dir, const struct bundle_args *a)
{
	struct slimfs_image *img = NULL;
	_cleanup_json_ json_t *spec = NULL;
	_cleanup_free_ char *real = NULL, *rootfs = NULL, *config = NULL;
	struct spec_opts so = {
		.hostname = a->hostname ? a->hostname : "slimfs",
		.user = a->user,
		.terminal = a->terminal,
		.args = a->args,
		.nargs = a->nargs,
	};
	bool made_dir = false, made_rootfs = false;
	uint32_t view;
	int r;

	/* Everything that reads the image first: nothing to undo when it fails. */
	r = slimfs_image_open(image, NULL, NULL, &img);
	if (r < 0)
		return r;
	view = img->info->default_view;
	if (a->view) {
		r = slimfs_index_view_find(img->idx, a->view, &view);
		if (r < 0) {
			log_error_errno(r, "'%s': no view '%s'", image, a->view);
			goto out;
		}
	}
	r = make_spec(img, view, &so, &spec);
	if (r < 0) {
		if (r == -ENOMEM)
			log_error_errno(r, "'%s': cannot make the runtime spec", image);
		goto out;
	}

	if (mkdir(dir, 0755) == 0) {
		made_dir = true;
	} else if (errno == EEXIST) {
		r = dir_is_empty(dir);
		if (r <= 0) {
			r = r < 0 ? log_error_errno(r, "cannot read '%s'", dir) : -ENOTEMPTY;
			if (r == -ENOTEMPTY)
				log_error("'%s' exists and is not empty", dir);
			goto out;
		}
	} else {
		r = log_error_errno(-errno, "cannot create '%s'", dir);
		goto out;
	}
	real = realpath(dir, NULL);
	if (!real) {
		r = log_error_errno(-errno, "cannot open '%s'", dir);
		goto undo;
	}
	if (asprintf(&rootfs, "%s/rootfs", real) < 0 ||
	    asprintf(&config, "%s/config.json", real) < 0) {
		r = -ENOMEM;
		goto undo;
	}
	if (mkdir(rootfs, 0755) < 0) {
		r = log_error_errno(-errno, "cannot create '%s'", rootfs);
		goto undo;
	}
	made_rootfs = true;
	r = write_config(real, spec);
	if (r < 0)
		goto undo;
	r = mount_image(image, rootfs, a);
	if (r < 0)
		goto undo;
	log_info("bundle ready: %s (runc run --bundle %s ID; slimfs bundle --remove %s)", real,
		 real, real);
	r = 0;
	goto out;
undo:
	if (config)
		unlink(config);
	if (made_rootfs)
		rmdir(rootfs);
	if (made_dir)
		rmdir(dir);
out:
	slimfs_image_close(img);
	return r;
}

int cmd_bundle(int argc, char **argv)
{
	enum { OPT_VIEW = 256, OPT_CACHE, OPT_HOSTNAME, OPT_REMOVE, OPT_LAZY };
	static const struct option longopts[] = {
		{"view", required_argument, NULL, OPT_VIEW},
		{"cache", required_argument, NULL, OPT_CACHE},
		{"options", required_argument, NULL, 'o'},
		{"hostname", required_argument, NULL, OPT_HOSTNAME},
		{"user", required_argument, NULL, 'u'},
		{"terminal", no_argument, NULL, 't'},
		{"remove", no_argument, NULL, OPT_REMOVE},
		{"lazy", no_argument, NULL, OPT_LAZY},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct bundle_args a = {0};
	bool remove = false, lazy = false;
	int c, nargs, r;

	/* "slimfs bundle rm DIR" */
	if (argc >= 2 && (strcmp(argv[1], "rm") == 0 || strcmp(argv[1], "remove") == 0)) {
		remove = true;
		argv[1] = argv[0];
		argc--;
		argv++;
	}
	/* "IMAGE DIR -- ARGS...": ARGS are the container's, hidden from getopt. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			a.args = argv + i + 1;
			a.nargs = (size_t)(argc - i - 1);
			argc = i;
			break;
		}
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:u:tqh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_VIEW:
			a.view = optarg;
			break;
		case OPT_CACHE:
			a.cache = optarg;
			break;
		case 'o':
			a.fuse_opts = optarg;
			break;
		case OPT_HOSTNAME:
			a.hostname = optarg;
			break;
		case 'u':
			a.user = optarg;
			break;
		case 't':
			a.terminal = true;
			break;
		case OPT_REMOVE:
			remove = true;
			break;
		case OPT_LAZY:
			lazy = true;
			break;
		case 'q':
			slimfs_log_set_level(SLIMFS_LOG_ERROR);
			break;
		case 'h':
			bundle_usage(stdout);
			return 0;
		default:
			bundle_usage(stderr);
			return EXIT_USAGE;
		}
	}
	nargs = argc - optind;
	if (remove) {
		if (nargs != 1 || a.view || a.cache || a.fuse_opts || a.hostname || a.user ||
		    a.terminal || a.args) {
			fprintf(stderr, "usage: slimfs bundle --remove [--lazy] DIR\n");
			return EXIT_USAGE;
		}
		return bundle_remove(argv[optind], lazy) < 0 ? 1 : 0;
	}
	if (lazy) {
		fprintf(stderr, "slimfs bundle: --lazy goes with --remove\n");
		return EXIT_USAGE;
	}
	if (nargs != 2) {
		bundle_usage(stderr);
		return EXIT_USAGE;
	}
	if (a.args && a.nargs == 0) {
		fprintf(stderr, "slimfs bundle: '--' must be followed by the command to run\n");
		return EXIT_USAGE;
	}
	if (a.hostname && (!*a.hostname || strlen(a.hostname) > 64)) {
		fprintf(stderr, "slimfs bundle: --hostname must be 1 to 64 characters\n");
		return EXIT_USAGE;
	}
	r = bundle_create(argv[optind], argv[optind + 1], &a);
	return r < 0 ? 1 : 0;
}
