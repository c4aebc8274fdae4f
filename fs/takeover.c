// SPDX-License-Identifier: MIT
/* The daemon's worker loop, its control socket and the handover of a mount. */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "slimfs/util.h"
#include "stats.h"
#include "takeover.h"

/* The kernel's request header (linux/fuse.h, which clashes with libfuse's). */
struct in_header {
	uint32_t len, opcode;
	uint64_t unique, nodeid;
	uint32_t uid, gid, pid;
	uint16_t total_extlen, padding;
};
_Static_assert(sizeof(struct in_header) == 40, "fuse_in_header");
/* What follows it in a READ (fuse_read_in), up to the fields used here. */
struct read_in {
	uint64_t fh, offset;
	uint32_t size, read_flags;
};
#define OP_INIT 26u
#define OP_READ 15u
/* Unique of the replayed INIT: no request of the kernel has it, so the
 * kernel drops our reply (ENOENT, which libfuse does not log). */
#define REPLAY_UNIQUE (1ull << 62)
#define INIT_MAX      256u

#define REPLY_MAGIC   0x4b544c53u /* "SLTK" */
#define REPLY_VERSION 1u
#define INFO_MAGIC    "SLIMFS-INFO 1"
/* Seconds: a client's request line; the old daemon's answer (it first lets
 * its workers finish what they hold: a remote read can take a while); the
 * new daemon's SERVING; the old daemon's exit. */
#define REQUEST_TIMEOUT_S 5
#define ANSWER_TIMEOUT_S  120
#define SERVING_TIMEOUT_S 60
#define EXIT_TIMEOUT_S	  60

/* The old daemon's answer to TAKEOVER; the descriptor rides with it. */
struct ctl_reply {
	uint32_t magic, version;
	int32_t status; /* 0, or -errno with msg */
	uint32_t init_len;
	uint32_t want;
	uint32_t pad;
	uint8_t init[INIT_MAX];
	char msg[256];
};

struct worker {
	pthread_t thread;
	struct slimfs_serve *s;
	atomic_bool done;
	bool running;
};

struct slimfs_serve {
	struct slimfs_serve_opts o;
	struct worker *w;
	atomic_bool stop;
	sem_t lead;	  /* 1 when no worker leads: see worker_main */
	bool nonblock;	  /* we made the device non-blocking */
	atomic_int ended; /* 0, or 1 + enum slimfs_serve_end of the first worker out */
	int wake[2];	  /* a worker ended */
	int ctl;	  /* listening control socket, or -1 */
	dev_t ctl_dev;
	ino_t ctl_ino;
	int handed_to; /* connection to the new daemon, kept until we exit */
	pthread_mutex_t init_lock;
	atomic_bool have_init;
	uint32_t init_len;
	uint8_t init[INIT_MAX];
};

struct slimfs_takeover {
	int conn, fd;
	struct ctl_reply rep;
};

int slimfs_ctl_path(const char *mountpoint, char *out, size_t len)
{
	size_t n;
	int r = slimfs_stats_socket_path(mountpoint, out, len);

	if (r < 0)
		return r;
	n = strlen(out); /* "....sock" -> "....ctl": never longer */
	if (n < 5 || strcmp(out + n - 5, ".sock") != 0)
		return -EINVAL;
	strcpy(out + n - 5, ".ctl");
	return 0;
}

/* ------------------------------------------------------------------ workers */

static void on_sigusr1(int sig)
{
	(void)sig; /* only there to interrupt a worker's read */
}

static sigset_t usr1_set(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	return set;
}

/* Keeps the kernel's INIT: a new daemon replays it. */
static void capture_init(struct slimfs_serve *s, const struct fuse_buf *b)
{
	const struct in_header *h = b->mem;

	if ((b->flags & FUSE_BUF_IS_FD) || b->size < sizeof(*h) || h->opcode != OP_INIT)
		return;
	pthread_mutex_lock(&s->init_lock);
	if (!s->have_init) {
		s->init_len = (uint32_t)MIN(b->size, INIT_MAX);
		memcpy(s->init, b->mem, s->init_len);
		atomic_store(&s->have_init, true);
	}
	pthread_mutex_unlock(&s->init_lock);
}

static void worker_end(struct slimfs_serve *s, enum slimfs_serve_end e)
{
	int none = 0;

	atomic_compare_exchange_strong(&s->ended, &none, 1 + (int)e);
	(void)!write(s->wake[1], "x", 1);
}

/* Keeps polling an idle device this long before it sleeps in poll(2). */
#define SPIN_NS (100 * 1000)

static int64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/*
 * Only a read may wait for the image: the rest answers from the index, and
 * so does a read whose chunks are decoded in memory (each handover wakes a
 * worker; fio's 4 KiB random reads of a file 4x the memory cache: 15-20% of
 * its FUSE reads).
 */
static bool quick_request(const struct slimfs_serve *s, const struct fuse_buf *b)
{
	const struct in_header *h = b->mem;
	struct read_in in;

	if ((b->flags & FUSE_BUF_IS_FD) || b->size < sizeof(*h))
		return false;
	if (h->opcode != OP_READ)
		return true;
	if (!s->o.fs || b->size < sizeof(*h) + sizeof(in))
		return false;
	memcpy(&in, (const uint8_t *)b->mem + sizeof(*h), sizeof(in));
	return slimfs_fs_read_ready(s->o.fs, h->nodeid, in.offset, in.size);
}

/*
 * Sleeps in sem_wait or poll with SIGUSR1 open: the signal (stop_workers)
 * ends the wait, and a pending one is taken before it.
 */
static void wait_lead(struct slimfs_serve *s, const sigset_t *usr1, bool *lead)
{
	pthread_sigmask(SIG_UNBLOCK, usr1, NULL);
	if (!atomic_load(&s->stop))
		*lead = sem_wait(&s->lead) == 0;
	pthread_sigmask(SIG_BLOCK, usr1, NULL);
}

static void wait_request(struct slimfs_serve *s, const sigset_t *usr1)
{
	struct pollfd p = {.fd = fuse_session_fd(s->o.se), .events = POLLIN};

	pthread_sigmask(SIG_UNBLOCK, usr1, NULL);
	if (!atomic_load(&s->stop))
		(void)poll(&p, 1, -1);
	pthread_sigmask(SIG_BLOCK, usr1, NULL);
}

/*
 * One worker leads: it alone reads the device, which start_workers made
 * non-blocking; the others sleep on s->lead. An idle leader keeps reading
 * for SPIN_NS before it sleeps in poll(2): a tree walk's next request
 * (a directory's second READDIRPLUS, which finds its end) then needs no
 * wake-up, neither of us nor, with no reader asleep on the device, by the
 * walker's CPU, which costs tens of microseconds each on a small VM.
 * A leader answers index requests itself and stays the leader; before a
 * read, which may wait for the image, it hands the lead to a sleeper, so
 * that reads run in parallel as before. SIGUSR1 (stop_workers) ends any
 * wait; a request in hand is answered whole.
 */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct slimfs_serve *s = w->s;
	struct fuse_session *se = s->o.se;
	struct fuse_buf buf = {.mem = NULL};
	sigset_t usr1 = usr1_set();
	int64_t idle_since = 0;
	bool lead = false;

	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	for (;;) {
		int r;

		if (atomic_load(&s->stop) || fuse_session_exited(se)) {
			if (fuse_session_exited(se))
				worker_end(s, SLIMFS_SERVE_STOPPED);
			break;
		}
		if (!lead) {
			wait_lead(s, &usr1, &lead);
			idle_since = 0;
			continue;
		}
		r = fuse_session_receive_buf(se, &buf);
		if (r == -EAGAIN) {
			int64_t t = now_ns();

			if (!idle_since)
				idle_since = t;
			else if (t - idle_since >= SPIN_NS) {
				wait_request(s, &usr1);
				idle_since = 0;
			} else {
				/* Under SCHED_FIFO nothing else of our priority
				 * would run on this core while we poll. */
				sched_yield();
			}
			continue;
		}
		idle_since = 0;
		if (r == -EINTR)
			continue;
		if (r == 0) { /* ENODEV: unmounted, or the connection aborted */
			worker_end(s, SLIMFS_SERVE_UNMOUNTED);
			break;
		}
		if (r < 0) {
			log_error_errno(r, "cannot read a FUSE request");
			fuse_session_exit(se);
			worker_end(s, SLIMFS_SERVE_FAILED);
			break;
		}
		if (!atomic_load(&s->have_init))
			capture_init(s, &buf);
		if (s->o.fs)
			slimfs_fs_touch(s->o.fs);
		if (!quick_request(s, &buf)) {
			lead = false;
			sem_post(&s->lead);
		}
		fuse_session_process_buf(se, &buf);
	}
	if (lead) /* the next one finds the end too */
		sem_post(&s->lead);
	free(buf.mem);
	atomic_store(&w->done, true);
	return NULL;
}

/* Non-blocking for the workers (worker_main); blocking again once they are
 * stopped, for a daemon that takes the mount over (the file description is
 * shared), of any version. */
static int set_nonblock(struct slimfs_serve *s, bool on)
{
	int fd, fl;

	if (on == s->nonblock) /* also after the session is gone (slimfs_serve_free) */
		return 0;
	fd = fuse_session_fd(s->o.se);
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0)
		return -errno;
	s->nonblock = on;
	return 0;
}

/* Starts the workers [0, n) that do not run. */
static int start_workers(struct slimfs_serve *s, unsigned n)
{
	int r = set_nonblock(s, true);

	if (r < 0) {
		log_error_errno(r, "cannot make the FUSE device non-blocking");
		return r;
	}
	atomic_store(&s->stop, false);
	if (!s->w[0].running) { /* none runs: one lead (a stopped leader left it) */
		while (sem_trywait(&s->lead) == 0)
			;
		sem_post(&s->lead);
	}
	for (unsigned i = 0; i < n; i++) {
		struct worker *w = &s->w[i];

		if (w->running)
			continue;
		w->s = s;
		atomic_store(&w->done, false);
		r = -pthread_create(&w->thread, NULL, worker_main, w);
		if (r < 0) {
			log_error_errno(r, "cannot start FUSE worker %u", i);
			return r;
		}
		w->running = true;
	}
	return 0;
}

/* Each worker finishes the request it holds and reads no more. */
static void stop_workers(struct slimfs_serve *s)
{
	const struct timespec tick = {.tv_nsec = 5 * 1000 * 1000};

	atomic_store(&s->stop, true);
	for (;;) {
		bool left = false;

		for (unsigned i = 0; i < s->o.threads; i++) {
			struct worker *w = &s->w[i];

			if (!w->running)
				continue;
			if (atomic_load(&w->done)) {
				pthread_join(w->thread, NULL);
				w->running = false;
				continue;
			}
			/* Again each tick: a signal just before its wait is lost. */
			pthread_kill(w->thread, SIGUSR1);
			left = true;
		}
		if (!left)
			break;
		nanosleep(&tick, NULL);
	}
	(void)set_nonblock(s, false);
}

/* ------------------------------------------------------------------ control socket */

static int set_timeout(int fd, int seconds)
{
	struct timeval tv = {.tv_sec = seconds};

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

/* One '\n'-terminated line (without it) into buf. 0 or -errno (-EPIPE: EOF). */
static int read_line(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len - 1) {
		ssize_t n = read(fd, buf + got, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (n == 0)
			return -EPIPE;
		if (buf[got] == '\n') {
			buf[got] = '\0';
			return 0;
		}
		got++;
	}
	return -E2BIG;
}

/* Binds beside the path, then renames over it: a new daemon replaces the
 * old one's socket in one step. */
static int ctl_listen(struct slimfs_serve *s)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path = s->o.ctl_path;
	const char *slash = strrchr(path, '/');
	struct stat st;
	int r;

	if (!slash)
		return -EINVAL;
	r = snprintf(sa.sun_path, sizeof(sa.sun_path), "%.*s/.ctl-%d", (int)(slash - path), path,
		     (int)getpid());
	if (r < 0 || (size_t)r >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	(void)unlink(sa.sun_path);
	s->ctl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->ctl < 0)
		return -errno;
	if (bind(s->ctl, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sa.sun_path, 0600) < 0 ||
	    listen(s->ctl, 4) < 0 || stat(sa.sun_path, &st) < 0 || rename(sa.sun_path, path) < 0) {
		r = -errno;
		(void)unlink(sa.sun_path);
		close(s->ctl);
		s->ctl = -1;
		return r;
	}
	s->ctl_dev = st.st_dev;
	s->ctl_ino = st.st_ino;
	return 0;
}

static int send_reply(int c, const struct ctl_reply *rep, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = {.iov_base = (void *)rep, .iov_len = sizeof(*rep)};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.buf;
		m.msg_controllen = sizeof(u.buf);
		CMSG_FIRSTHDR(&m)->cmsg_level = SOL_SOCKET;
		CMSG_FIRSTHDR(&m)->cmsg_type = SCM_RIGHTS;
		CMSG_FIRSTHDR(&m)->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(CMSG_FIRSTHDR(&m)), &fd, sizeof(int));
	}
	do
		n = sendmsg(c, &m, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == sizeof(*rep) ? 0 : -EIO;
}

static void refuse(int c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void refuse(int c, int err, const char *fmt, ...)
{
	struct ctl_reply rep = {.magic = REPLY_MAGIC, .version = REPLY_VERSION, .status = -err};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rep.msg, sizeof(rep.msg), fmt, ap);
	va_end(ap);
	log_info("takeover refused: %s", rep.msg);
	(void)send_reply(c, &rep, -1);
}

static void answer_info(struct slimfs_serve *s, int c)
{
	const struct slimfs_daemon_info *in = s->o.info;
	FILE *f;
	char *out = NULL;
	size_t len = 0;

	f = open_memstream(&out, &len);
	if (!f)
		return;
	fputs(INFO_MAGIC, f);
	fputc('\0', f);
	fprintf(f, "%d%c%s%c%d%c%d%c", (int)getpid(), 0, in->cwd, 0, in->helper ? 1 : 0, 0,
		in->argc, 0);
	for (int i = 0; i < in->argc; i++) {
		fputs(in->argv[i], f);
		fputc('\0', f);
	}
	if (fclose(f) == 0)
		(void)slimfs_write_all(c, out, len);
	free(out);
}

/* A TAKEOVER request; true if the mount is handed over. */
static bool hand_over(struct slimfs_serve *s, int c, const char *arg, pid_t peer)
{
	struct ctl_reply rep = {.magic = REPLY_MAGIC, .version = REPLY_VERSION};
	const uint8_t *have = slimfs_index_digest(s->o.idx);
	uint8_t digest[32];
	char line[32], ours[72], *p = ours;
	int r;

	memcpy(p, "sha256:", 7);
	slimfs_hex(have, 32, p + 7);
	if (s->o.no_handover) {
		refuse(c, EPERM, "%s", s->o.no_handover);
		return false;
	}
	if (slimfs_parse_digest(arg, digest) < 0 || memcmp(digest, have, 32) != 0) {
		refuse(c, EXDEV,
		       "the new image's index (%s) is not the mounted one (%s): inode numbers "
		       "would mean other files",
		       arg, ours);
		return false;
	}
	if (!atomic_load(&s->have_init)) {
		refuse(c, EAGAIN, "the mount is not initialised yet");
		return false;
	}
	log_info("handing the mount over to pid %d", (int)peer);
	if (s->o.pause)
		s->o.pause(s->o.ud);
	stop_workers(s);
	rep.init_len = s->init_len;
	memcpy(rep.init, s->init, s->init_len);
	rep.want = *s->o.want;
	r = send_reply(c, &rep, fuse_session_fd(s->o.se));
	if (r == 0) {
		set_timeout(c, SERVING_TIMEOUT_S);
		r = read_line(c, line, sizeof(line));
		if (r == 0 && strcmp(line, "SERVING") != 0)
			r = -EPROTO;
	}
	if (r == 0) {
		log_info("pid %d serves the mount now", (int)peer);
		return true;
	}
	log_warn_errno(r, "handover to pid %d failed: serving on", (int)peer);
	if (start_workers(s, s->o.threads) < 0) {
		fuse_session_exit(s->o.se);
		worker_end(s, SLIMFS_SERVE_FAILED);
	}
	if (s->o.resume)
		s->o.resume(s->o.ud);
	return false;
}

/* One client of the control socket; true if the mount is handed over. */
static bool serve_ctl(struct slimfs_serve *s)
{
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	char line[128];
	int c = accept4(s->ctl, NULL, NULL, SOCK_CLOEXEC);
	bool gone = false;

	if (c < 0)
		return false;
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
	    (cred.uid != 0 && cred.uid != geteuid()) || set_timeout(c, REQUEST_TIMEOUT_S) < 0 ||
	    read_line(c, line, sizeof(line)) < 0) {
		close(c);
		return false;
	}
	if (strcmp(line, "INFO") == 0)
		answer_info(s, c);
	else if (strncmp(line, "TAKEOVER ", 9) == 0)
		gone = hand_over(s, c, line + 9, cred.pid);
	if (gone)
		s->handed_to = c; /* closed when we are done: the new daemon waits for it */
	else
		close(c);
	return gone;
}

/* ------------------------------------------------------------------ serve */

int slimfs_serve_start(const struct slimfs_serve_opts *o, struct slimfs_takeover *t,
		       struct slimfs_serve **out)
{
	struct sigaction sa = {.sa_handler = on_sigusr1};
	struct slimfs_serve *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s) {
		slimfs_takeover_abort(t);
		return -ENOMEM;
	}
	s->o = *o;
	s->ctl = s->handed_to = -1;
	s->wake[0] = s->wake[1] = -1;
	pthread_mutex_init(&s->init_lock, NULL);
	sem_init(&s->lead, 0, 0);
	s->w = calloc(o->threads, sizeof(*s->w));
	/* No SA_RESTART: the signal must end a worker's blocking read. */
	sigemptyset(&sa.sa_mask);
	if (!s->w || pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    sigaction(SIGUSR1, &sa, NULL) < 0) {
		r = s->w ? -errno : -ENOMEM;
		goto fail;
	}
	if (t) { /* the next daemon gets the same INIT */
		s->init_len = t->rep.init_len;
		memcpy(s->init, t->rep.init, s->init_len);
		atomic_store(&s->have_init, true);
	}
	r = start_workers(s, o->caller_inits && !t    ? 0
			     : o->first_threads && !t ? MIN(o->first_threads, o->threads)
						      : o->threads);
	if (r < 0)
		goto fail;
	if (t) {
		char buf[64];
		ssize_t n;

		r = slimfs_write_all(t->conn, "SERVING\n", 8);
		if (r < 0)
			log_warn_errno(r, "cannot tell the old daemon that we serve");
		/* Its exit closes the connection: then its sockets are gone. */
		set_timeout(t->conn, EXIT_TIMEOUT_S);
		while ((n = read(t->conn, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
			;
		if (n < 0)
			log_warn_errno(-errno, "the old daemon did not exit");
		close(t->conn);
		free(t);
		t = NULL;
	}
	r = ctl_listen(s);
	if (r < 0)
		log_warn_errno(r, "no control socket at '%s': this mount cannot be handed over",
			       o->ctl_path);
	*out = s;
	return 0;
fail:
	slimfs_takeover_abort(t);
	if (s->w) {
		stop_workers(s);
		free(s->w);
	}
	if (s->wake[0] >= 0) {
		close(s->wake[0]);
		close(s->wake[1]);
	}
	pthread_mutex_destroy(&s->init_lock);
	sem_destroy(&s->lead);
	free(s);
	return r;
}

int slimfs_serve_more(struct slimfs_serve *s)
{
	return start_workers(s, s->o.threads);
}

int slimfs_serve_first(struct slimfs_serve *s)
{
	return start_workers(s, s->o.first_threads ? MIN(s->o.first_threads, s->o.threads)
						   : s->o.threads);
}

int slimfs_serve_init(struct slimfs_serve *s, int timeout_ms)
{
	struct fuse_session *se = s->o.se;
	struct fuse_buf buf = {.mem = NULL};
	struct pollfd p = {.fd = fuse_session_fd(se), .events = POLLIN};
	int r;

	/* The device is non-blocking (start_workers): wait in poll. */
	while (!atomic_load(&s->have_init)) {
		if (fuse_session_exited(se)) {
			r = -EINTR;
			goto out;
		}
		r = poll(&p, 1, timeout_ms);
		if (r == 0) {
			r = -ETIMEDOUT;
			goto out;
		}
		if (r < 0 && errno != EINTR) {
			r = -errno;
			goto out;
		}
		r = fuse_session_receive_buf(se, &buf);
		if (r == -EAGAIN || r == -EINTR)
			continue;
		if (r == 0) {
			r = -ENODEV;
			goto out;
		}
		if (r < 0)
			goto out;
		capture_init(s, &buf);
		fuse_session_process_buf(se, &buf);
	}
	r = 0;
out:
	free(buf.mem);
	return r;
}

enum slimfs_serve_end slimfs_serve_run(struct slimfs_serve *s)
{
	enum slimfs_serve_end end = SLIMFS_SERVE_STOPPED;
	int e;

	for (;;) {
		struct pollfd p[2] = {{.fd = s->wake[0], .events = POLLIN},
				      {.fd = s->ctl, .events = POLLIN}};

		e = atomic_load(&s->ended);
		if (e) {
			end = (enum slimfs_serve_end)(e - 1);
			break;
		}
		if (fuse_session_exited(s->o.se)) /* a signal in another thread */
			break;
		/* A signal may miss poll (another thread takes it): look each second. */
		if (poll(p, 2, 1000) < 0 && errno != EINTR) {
			end = SLIMFS_SERVE_FAILED;
			break;
		}
		if ((p[1].revents & POLLIN) && serve_ctl(s))
			return SLIMFS_SERVE_HANDED_OVER; /* the workers are stopped */
	}
	stop_workers(s);
	return end;
}

void slimfs_serve_free(struct slimfs_serve *s)
{
	struct stat st;

	if (!s)
		return;
	stop_workers(s);
	if (s->ctl >= 0) {
		close(s->ctl);
		/* Ours still (no new daemon renamed its own over it): remove it. */
		if (stat(s->o.ctl_path, &st) == 0 && st.st_dev == s->ctl_dev &&
		    st.st_ino == s->ctl_ino)
			(void)unlink(s->o.ctl_path);
	}
	if (s->handed_to >= 0)
		close(s->handed_to);
	close(s->wake[0]);
	close(s->wake[1]);
	pthread_mutex_destroy(&s->init_lock);
	sem_destroy(&s->lead);
	free(s->w);
	free(s);
}

/* ------------------------------------------------------------------ new daemon */

static int recv_reply(int c, struct ctl_reply *rep, int *fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = {.iov_base = rep, .iov_len = sizeof(*rep)};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	size_t got;
	ssize_t n;

	*fd = -1;
	m.msg_control = u.buf;
	m.msg_controllen = sizeof(u.buf);
	do
		n = recvmsg(c, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
		if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS &&
		    h->cmsg_len >= CMSG_LEN(sizeof(int)))
			memcpy(fd, CMSG_DATA(h), sizeof(int));
	for (got = (size_t)n; n > 0 && got < sizeof(*rep); got += (size_t)n) {
		n = read(c, (char *)rep + got, sizeof(*rep) - got);
		if (n < 0 && errno == EINTR)
			n = 1, got--;
	}
	if (got < sizeof(*rep) || rep->magic != REPLY_MAGIC || rep->version != REPLY_VERSION ||
	    rep->init_len > INIT_MAX) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -EPROTO;
	}
	rep->msg[sizeof(rep->msg) - 1] = '\0';
	return 0;
}

int slimfs_takeover_request(const char *ctl_path, const uint8_t digest[32],
			    struct slimfs_takeover **out, int *fd)
{
	struct slimfs_takeover *t;
	char req[96];
	int r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->conn = t->fd = -1;
	r = slimfs_unix_connect(ctl_path, &t->conn);
	if (r < 0) {
		log_error_errno(r, "no slimfs daemon answers on '%s'", ctl_path);
		goto fail;
	}
	memcpy(req, "TAKEOVER sha256:", 16);
	slimfs_hex(digest, 32, req + 16);
	strcat(req, "\n");
	r = set_timeout(t->conn, ANSWER_TIMEOUT_S);
	if (r == 0)
		r = slimfs_write_all(t->conn, req, strlen(req));
	if (r == 0)
		r = recv_reply(t->conn, &t->rep, &t->fd);
	if (r < 0) {
		log_error_errno(r, "no answer from the daemon on '%s'", ctl_path);
		goto fail;
	}
	if (t->rep.status < 0) {
		r = t->rep.status;
		log_error("the running daemon refuses the takeover: %s", t->rep.msg);
		goto fail;
	}
	if (t->fd < 0 || t->rep.init_len < sizeof(struct in_header)) {
		r = -EPROTO;
		log_error("the running daemon sent no FUSE descriptor");
		goto fail;
	}
	*fd = t->fd;
	*out = t;
	return 0;
fail:
	slimfs_takeover_abort(t);
	return r;
}

unsigned slimfs_takeover_want(const struct slimfs_takeover *t)
{
	return t->rep.want;
}

int slimfs_takeover_init(struct slimfs_takeover *t, struct fuse_session *se)
{
	_Alignas(8) uint8_t msg[INIT_MAX];
	struct in_header *h = (struct in_header *)msg;
	struct fuse_buf b = {.size = t->rep.init_len, .mem = msg};

	memcpy(msg, t->rep.init, t->rep.init_len);
	h->len = t->rep.init_len;
	h->unique = REPLAY_UNIQUE;
	h->uid = h->gid = h->pid = 0;
	if (h->opcode != OP_INIT)
		return -EPROTO;
	fuse_session_process_buf(se, &b);
	if (fuse_session_exited(se)) {
		log_error("the replayed FUSE INIT failed");
		return -EPROTO;
	}
	return 0;
}

void slimfs_takeover_abort(struct slimfs_takeover *t)
{
	if (!t)
		return;
	if (t->conn >= 0)
		close(t->conn); /* the old daemon sees EOF and serves on */
	free(t);
}

int slimfs_takeover_detach(struct fuse_session *se)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (dup3(fd, fuse_session_fd(se), O_CLOEXEC) < 0)
		r = -errno;
	close(fd);
	return r;
}

void slimfs_takeover_unmount(const char *mnt, int fd)
{
	struct pollfd p = {.fd = fd};
	pid_t pid;
	int status;

	if (poll(&p, 1, 0) == 1 && (p.revents & POLLERR))
		return; /* already unmounted */
	if (umount2(mnt, MNT_DETACH) == 0)
		return;
	pid = fork();
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-z", "--", mnt, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		log_error("cannot unmount '%s'", mnt);
}

/* ------------------------------------------------------------------ restart */

int slimfs_daemon_query(const char *ctl_path, struct slimfs_daemon_info *info, char ***argv,
			char **buf, int *pid)
{
	_cleanup_free_ char *all = NULL;
	size_t len = 0;
	char *fields[5], *p, *end, **av = NULL;
	int c, r, argc;

	r = slimfs_unix_connect(ctl_path, &c);
	if (r < 0)
		return log_error_errno(r, "no slimfs daemon answers on '%s'", ctl_path);
	r = set_timeout(c, REQUEST_TIMEOUT_S);
	if (r == 0)
		r = slimfs_write_all(c, "INFO\n", 5);
	for (; r == 0;) {
		char *n = realloc(all, len + 4096 + 1);
		ssize_t k;

		if (!n) {
			r = -ENOMEM;
			break;
		}
		all = n;
		k = read(c, all + len, 4096);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			r = errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (k <= 0)
			break;
		len += (size_t)k;
		if (len > 1 << 20)
			r = -E2BIG;
	}
	close(c);
	if (r < 0)
		return log_error_errno(r, "no answer from the daemon on '%s'", ctl_path);
	if (!all)
		goto bad;
	all[len] = '\0';
	p = all;
	end = all + len;
	for (int i = 0; i < 5; i++) {
		if (p >= end)
			goto bad;
		fields[i] = p;
		p += strlen(p) + 1;
	}
	argc = atoi(fields[4]);
	if (strcmp(fields[0], INFO_MAGIC) != 0 || argc < 0 || argc > 4096)
		goto bad;
	av = calloc((size_t)argc + 1, sizeof(*av));
	if (!av)
		return -ENOMEM;
	for (int i = 0; i < argc; i++) {
		if (p >= end) {
			free(av);
			goto bad;
		}
		av[i] = p;
		p += strlen(p) + 1;
	}
	*pid = atoi(fields[1]);
	info->cwd = fields[2];
	info->helper = strcmp(fields[3], "1") == 0;
	info->argc = argc;
	info->argv = av;
	*argv = av;
	*buf = all;
	all = NULL;
	return 0;
bad:
	log_error("the daemon on '%s' sent a bad description", ctl_path);
	return -EPROTO;
}
