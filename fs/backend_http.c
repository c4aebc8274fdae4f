// SPDX-License-Identifier: MIT
/*
 * HTTP(S) range backend over libcurl. Any server that honours Range works
 * (nginx, object stores, CDNs, registry blob endpoints).
 *
 * - Connections are reused: a pool of easy handles sharing one connection
 *   cache, DNS cache and TLS session cache (CURLSH).
 * - Every read asks for exactly [off, off + len) and accepts only a 206 whose
 *   Content-Range says so and whose body has exactly len bytes; anything else
 *   (200 for the whole file, 416, 5xx, short or long bodies) is an error.
 * - Bounded retries with exponential backoff, all inside one deadline per
 *   read (timeout_ms), so that no reader waits longer than that.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dl_curl.h"
#include "http_plain.h"
#include "http_range.h"
#include "slimfs/fetch.h"
#include "slimfs/util.h"

#define POOL_MAX 16
/*
 * The size probe at open asks for the first HEAD_SIZE bytes, kept for later
 * reads: the superblock that the mount reads next costs no second round
 * trip. A slimfs image's data area starts at a multiple of 4096 past the
 * index, so the head never holds chunk data.
 */
#define HEAD_SIZE	   4096u
#define DEFAULT_TIMEOUT_MS 10000u
#define DEFAULT_RETRIES	   4u
/* A plain request (http_plain.h) waits at most this, then libcurl gets the rest. */
#define PLAIN_TIMEOUT_MS 2000u
#define USER_AGENT	 "slimfs/" SLIMFS_VERSION

struct http_backend {
	struct slimfs_backend b;
	char *url;
	char *auth_header; /* owned, or NULL */
	/* Until libcurl is loaded: reads go here if they can (http_plain.h). */
	pthread_mutex_t plain_lock;
	struct slimfs_plain_http *plain; /* under plain_lock; NULL once unused */
	/* libcurl's part, set up on first use (ensure_curl) */
	pthread_mutex_t curl_lock;
	_Atomic bool curl_ready;
	struct curl_slist *headers;
	CURLSH *share;
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
	pthread_mutex_t pool_lock;
	CURL *pool[POOL_MAX];
	unsigned npool;
	unsigned timeout_ms, retries;
	bool insecure;
	char *ca_file; /* owned, or NULL */
	uint8_t *head; /* the first head_len bytes, from the probe */
	size_t head_len;
};

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
	struct http_backend *hb = ud;

	(void)h;
	(void)access;
	pthread_mutex_lock(&hb->share_lock[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
	struct http_backend *hb = ud;

	(void)h;
	pthread_mutex_unlock(&hb->share_lock[data]);
}

struct xfer {
	uint8_t *buf;
	size_t len;
	uint64_t want_off, total; /* total: from Content-Range, 0 unknown */
	bool up_to_end;		  /* fewer bytes are fine where the resource ends */
	struct slimfs_http_answer ans;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;

	if (n > x->len - x->ans.got) {
		x->ans.overflow = true;
		return 0; /* aborts the transfer */
	}
	memcpy(x->buf + x->ans.got, ptr, n);
	x->ans.got += n;
	return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	uint64_t a, b, total;
	int r = slimfs_http_content_range(ptr, n, &a, &b, &total);

	if (r == 0) {
		x->ans.has_range = true;
		x->ans.first = a;
		x->ans.last = b;
		x->total = total;
	} else if (r == -EINVAL) {
		x->ans.has_range = false; /* a malformed Content-Range counts as none */
	}
	return n;
}

/* Loads libcurl (once per process) and sets up this backend's share and headers. */
static int ensure_curl(struct http_backend *hb)
{
	int r = 0;

	if (atomic_load_explicit(&hb->curl_ready, memory_order_acquire))
		return 0;
	pthread_mutex_lock(&hb->curl_lock);
	if (!atomic_load_explicit(&hb->curl_ready, memory_order_relaxed)) {
		r = slimfs_dl_curl_load(); /* and curl_global_init(), once */
		if (r == 0 && !hb->share) {
			hb->share = curl_share_init();
			if (hb->share) {
				curl_share_setopt(hb->share, CURLSHOPT_LOCKFUNC, share_lock);
				curl_share_setopt(hb->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
				curl_share_setopt(hb->share, CURLSHOPT_USERDATA, hb);
				curl_share_setopt(hb->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
				curl_share_setopt(hb->share, CURLSHOPT_SHARE,
						  CURL_LOCK_DATA_SSL_SESSION);
				curl_share_setopt(hb->share, CURLSHOPT_SHARE,
						  CURL_LOCK_DATA_CONNECT);
			}
		}
		if (r == 0 && hb->auth_header && !hb->headers)
			hb->headers = curl_slist_append(NULL, hb->auth_header);
		if (r == 0 && (!hb->share || (hb->auth_header && !hb->headers)))
			r = -ENOMEM;
		if (r == 0)
			atomic_store_explicit(&hb->curl_ready, true, memory_order_release);
	}
	pthread_mutex_unlock(&hb->curl_lock);
	return r;
}

/*
 * Before libcurl is set up: bytes [off, off + *len) over the plain connection,
 * if there is one and it is free. 0, or -errno: ask libcurl. A failed plain
 * request ends the plain connection: libcurl says why, and retries.
 */
static int plain_read(struct http_backend *hb, uint64_t off, void *buf, size_t *len, bool up_to_end,
		      uint64_t budget_ms, uint64_t *total)
{
	int r = -ENOTCONN;

	/* once libcurl is loaded, it does the rest (ensure_curl is cheap then) */
	if (atomic_load_explicit(&hb->curl_ready, memory_order_acquire) ||
	    slimfs_dl_curl_loaded() || pthread_mutex_trylock(&hb->plain_lock) != 0)
		return r;
	if (hb->plain) {
		r = slimfs_plain_http_get(hb->plain, off, buf, len, up_to_end,
					  (unsigned)MIN(budget_ms, PLAIN_TIMEOUT_MS), total);
		if (r < 0) {
			log_debug("'%s': bytes %" PRIu64 "-%" PRIu64 " over plain HTTP: %s; "
				  "asking libcurl",
				  hb->url, off, off + *len - 1, strerror(-r));
			slimfs_plain_http_free(hb->plain);
			hb->plain = NULL;
		}
	}
	pthread_mutex_unlock(&hb->plain_lock);
	return r;
}

static CURL *get_handle(struct http_backend *hb)
{
	CURL *h = NULL;

	pthread_mutex_lock(&hb->pool_lock);
	if (hb->npool)
		h = hb->pool[--hb->npool];
	pthread_mutex_unlock(&hb->pool_lock);
	if (h)
		return h;
	h = curl_easy_init();
	if (!h)
		return NULL;
	curl_easy_setopt(h, CURLOPT_SHARE, hb->share);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, NULL); /* identity: ranges of raw bytes */
	curl_easy_setopt(h, CURLOPT_USERAGENT, USER_AGENT);
	if (hb->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	} else if (hb->ca_file) {
		curl_easy_setopt(h, CURLOPT_CAINFO, hb->ca_file);
	}
	return h;
}

static void put_handle(struct http_backend *hb, CURL *h)
{
	pthread_mutex_lock(&hb->pool_lock);
	if (hb->npool < POOL_MAX) {
		hb->pool[hb->npool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&hb->pool_lock);
	if (h)
		curl_easy_cleanup(h);
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* One attempt. 0, -EAGAIN (worth retrying), or a final -errno. */
static int http_try(struct http_backend *hb, CURL *h, struct xfer *x, uint64_t budget_ms, char *why,
		    size_t whylen)
{
	char range[64];
	long status = 0;
	CURLcode rc;

	snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, x->want_off,
		 x->want_off + x->len - 1);
	memset(&x->ans, 0, sizeof(x->ans));
	curl_easy_setopt(h, CURLOPT_URL, hb->url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hb->headers);
	curl_easy_setopt(h, CURLOPT_RANGE, range);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)MAX(budget_ms, 1u));
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)MIN(MAX(budget_ms, 1u), 5000u));
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && x->ans.overflow)) {
		snprintf(why, whylen, "%s%s", curl_easy_strerror(rc),
			 rc == CURLE_PEER_FAILED_VERIFICATION
				 ? " (TLS: the server's certificate is not trusted; --cacert FILE "
				   "names a CA to trust, --insecure skips the check)"
				 : "");
		return rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT ||
				       rc == CURLE_SSL_CACERT_BADFILE ||
				       rc == CURLE_PEER_FAILED_VERIFICATION
			       ? -EIO
			       : -EAGAIN;
	}
	x->ans.status = status;
	if (x->up_to_end && status == 206 && x->ans.has_range && !x->ans.overflow &&
	    x->ans.first == x->want_off && x->total && x->ans.last + 1 == x->total &&
	    x->ans.got == x->ans.last - x->ans.first + 1)
		x->len = x->ans.got;
	return slimfs_http_verdict(&x->ans, x->want_off, x->len, why, whylen);
}

static int http_read(struct slimfs_backend *b, uint64_t off, void *buf, size_t len)
{
	struct http_backend *hb = (struct http_backend *)b;
	struct xfer x = {.buf = buf, .len = len, .want_off = off};
	uint64_t start = slimfs_now_ns(), deadline = start + (uint64_t)hb->timeout_ms * 1000000u;
	char why[256] = "";
	unsigned attempt;
	CURL *h;
	int r = -EIO;

	if (len == 0)
		return 0;
	if (b->size && (off > b->size || len > b->size - off))
		return -ERANGE;
	if (off < hb->head_len) {
		size_t k = MIN(len, hb->head_len - (size_t)off);

		memcpy(buf, hb->head + off, k);
		if (k == len)
			return 0;
		off += k;
		len -= k;
		x.buf = (uint8_t *)buf + k;
		x.len = len;
		x.want_off = off;
	}
	if (!atomic_load_explicit(&hb->curl_ready, memory_order_acquire)) {
		size_t got = len;
		uint64_t total;

		if (plain_read(hb, off, x.buf, &got, false, hb->timeout_ms, &total) == 0) {
			slimfs_fetch_stats_add(&b->stats, len, slimfs_now_ns() - start);
			return 0;
		}
		r = ensure_curl(hb);
		if (r < 0)
			return r;
	}
	h = get_handle(hb);
	if (!h)
		return -ENOMEM;
	for (attempt = 0; attempt <= hb->retries; attempt++) {
		uint64_t now = slimfs_now_ns();

		if (now >= deadline)
			break;
		if (attempt) {
			uint64_t backoff = 50ull << MIN(attempt, 6u);

			__atomic_fetch_add(&b->stats.retries, 1, __ATOMIC_RELAXED);
			if (now + backoff * 1000000u >= deadline)
				break;
			sleep_ms(backoff);
			now = slimfs_now_ns();
		}
		r = http_try(hb, h, &x, (deadline - now) / 1000000u, why, sizeof(why));
		if (r != -EAGAIN)
			break;
		/* a failed connection may be half-dead: start the next try afresh */
		curl_easy_cleanup(h);
		h = get_handle(hb);
		if (!h)
			return -ENOMEM;
	}
	put_handle(hb, h);
	if (r == 0) {
		slimfs_fetch_stats_add(&b->stats, len, slimfs_now_ns() - start);
		return 0;
	}
	__atomic_fetch_add(&b->stats.errors, 1, __ATOMIC_RELAXED);
	log_error("'%s': bytes %" PRIu64 "-%" PRIu64 ": %s (after %u attempts, %" PRIu64 " ms)",
		  hb->url, off, off + len - 1, why[0] ? why : "timed out", attempt,
		  (slimfs_now_ns() - start) / 1000000u);
	return r == -EAGAIN ? -EIO : r;
}

static void http_free(struct slimfs_backend *b)
{
	struct http_backend *hb = (struct http_backend *)b;

	for (unsigned i = 0; i < hb->npool; i++)
		curl_easy_cleanup(hb->pool[i]);
	if (hb->share)
		curl_share_cleanup(hb->share);
	for (unsigned i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&hb->share_lock[i]);
	pthread_mutex_destroy(&hb->pool_lock);
	pthread_mutex_destroy(&hb->plain_lock);
	pthread_mutex_destroy(&hb->curl_lock);
	if (hb->headers) /* set only once libcurl is loaded, like share and the pool */
		curl_slist_free_all(hb->headers);
	slimfs_plain_http_free(hb->plain);
	free(hb->auth_header);
	free(hb->url);
	free(hb->ca_file);
	free(hb->head);
}

static int http_wait(struct slimfs_backend *b)
{
	struct http_backend *hb = (struct http_backend *)b;
	int r = ensure_curl(hb);

	if (r < 0)
		return log_error_errno(r, "'%s': cannot fetch without libcurl", hb->url);
	/* libcurl's from now on: no idle connection to the server left behind */
	pthread_mutex_lock(&hb->plain_lock);
	slimfs_plain_http_free(hb->plain);
	hb->plain = NULL;
	pthread_mutex_unlock(&hb->plain_lock);
	return 0;
}

static const struct slimfs_backend_ops http_ops = {
	.read = http_read,
	.wait = http_wait,
	.free = http_free,
};

int slimfs_backend_open_http(const char *url, const struct slimfs_fetch_opts *o,
			     const char *auth_header, struct slimfs_backend **out)
{
	struct http_backend *hb;
	struct xfer x = {.len = HEAD_SIZE, .up_to_end = true};
	uint64_t start = slimfs_now_ns();
	char why[256] = "";
	CURL *h;
	int r;

	hb = calloc(1, sizeof(*hb));
	if (!hb)
		return -ENOMEM;
	hb->b.ops = &http_ops;
	hb->b.remote = true;
	hb->timeout_ms = o && o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	hb->retries = o && o->retries ? o->retries : DEFAULT_RETRIES;
	hb->insecure = o && o->insecure;
	pthread_mutex_init(&hb->pool_lock, NULL);
	pthread_mutex_init(&hb->plain_lock, NULL);
	pthread_mutex_init(&hb->curl_lock, NULL);
	for (unsigned i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&hb->share_lock[i], NULL);
	hb->url = strdup(url);
	hb->b.name = strdup(url);
	hb->head = x.buf = malloc(HEAD_SIZE);
	if (o && o->ca_file)
		hb->ca_file = strdup(o->ca_file);
	if (auth_header)
		hb->auth_header = strdup(auth_header);
	if (!hb->url || !hb->b.name || !hb->head || (o && o->ca_file && !hb->ca_file) ||
	    (auth_header && !hb->auth_header)) {
		r = -ENOMEM;
		goto fail;
	}
	/*
	 * Learn the size from the head's Content-Range (and that Range works):
	 * over plain HTTP while libcurl is still loading (slimfs_backend_preload:
	 * the mount), and then the index too; libcurl from the first answer that
	 * is not plain, or once loaded.
	 */
	if (!auth_header && slimfs_dl_curl_preloaded() && !slimfs_dl_curl_loaded() &&
	    slimfs_plain_http_new(url, USER_AGENT, &hb->plain) == 0 &&
	    plain_read(hb, 0, x.buf, &x.len, true, hb->timeout_ms, &x.total) == 0 && x.total) {
		r = 0;
		goto done;
	}
	r = ensure_curl(hb);
	if (r < 0)
		goto fail;
	x.len = HEAD_SIZE;
	h = get_handle(hb);
	if (!h) {
		r = -ENOMEM;
		goto fail;
	}
	r = http_try(hb, h, &x, hb->timeout_ms, why, sizeof(why));
	put_handle(hb, h);
	if (r == 0 && x.total == 0) {
		snprintf(why, sizeof(why), "no Content-Range in the answer");
		r = -EIO;
	}
	if (r < 0) {
		log_error("'%s': %s", url, why);
		r = r == -EAGAIN ? -EIO : r;
		goto fail;
	}
done:
	hb->b.size = x.total;
	hb->head_len = x.len;
	slimfs_fetch_stats_add(&hb->b.stats, x.len, slimfs_now_ns() - start);
	*out = &hb->b;
	return 0;
fail:
	http_free(&hb->b);
	free(hb->b.name);
	free(hb);
	return r;
}
