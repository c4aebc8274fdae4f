// SPDX-License-Identifier: MIT
/*
 * OCI registry backend and push. An image is stored as an OCI artifact: a
 * manifest (artifactType application/vnd.slimfs.image.v1) whose single layer
 * is the image file, annotated with the index digest. Mounting resolves the
 * manifest (checked against the reference's digest when it has one), pins the
 * index digest from it, then reads the layer blob with range requests.
 * Auth: anonymous, Basic, or Bearer tokens (the distribution token flow),
 * with credentials from --creds or the Docker config file.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dl_curl.h"
#include "slimfs/fetch.h"
#include "slimfs/sha256.h"
#include "slimfs/util.h"

#define MANIFEST_MAX (4u << 20)
#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"

struct ociref {
	char *registry; /* host[:port] */
	char *repo;
	char *tag;    /* or NULL */
	char *digest; /* "sha256:..." or NULL */
	bool plain_http;
};

static void ociref_free(struct ociref *r)
{
	free(r->registry);
	free(r->repo);
	free(r->tag);
	free(r->digest);
}

static bool is_local_host(const char *host)
{
	size_t n = strcspn(host, ":");

	if (host[0] == '[')
		return strncmp(host, "[::1]", 5) == 0;
	return (n == 9 && strncmp(host, "localhost", 9) == 0) || strncmp(host, "127.", 4) == 0;
}

static int parse_ref(const char *s, bool insecure, struct ociref *r)
{
	const char *slash, *at, *colon, *p;

	memset(r, 0, sizeof(*r));
	if (strncmp(s, "oci://", 6) == 0)
		s += 6;
	slash = strchr(s, '/');
	if (!slash || slash == s || !slash[1])
		goto bad;
	r->registry = strndup(s, (size_t)(slash - s));
	p = slash + 1;
	at = strchr(p, '@');
	if (at) {
		uint8_t d[32];

		r->digest = strdup(at + 1);
		if (!r->digest || slimfs_parse_digest(r->digest, d) < 0 ||
		    strncmp(r->digest, "sha256:", 7) != 0)
			goto bad;
		r->repo = strndup(p, (size_t)(at - p));
	} else {
		colon = strrchr(p, ':');
		if (colon && !strchr(colon, '/')) {
			r->repo = strndup(p, (size_t)(colon - p));
			r->tag = strdup(colon + 1);
		} else {
			r->repo = strdup(p);
			r->tag = strdup("latest");
		}
		if (!r->tag || !r->tag[0])
			goto bad;
	}
	if (!r->registry || !r->repo || !r->repo[0])
		goto bad;
	for (const char *c = r->repo; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || strchr("._-/", *c)))
			goto bad;
	r->plain_http = is_local_host(r->registry) || insecure;
	return 0;
bad:
	log_error("'%s': not a registry reference (REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:HEX)",
		  s);
	ociref_free(r);
	return -EINVAL;
}

/* One HTTP exchange with the registry API. */
struct req {
	const char *method;
	const char *url;
	struct curl_slist *headers; /* borrowed */
	const void *body;	    /* or body_fd */
	size_t body_len;
	int body_fd;
	uint64_t body_fd_len;
	/* answer */
	long status;
	char *resp;
	size_t resp_len;
	bool resp_overflow;
	char location[2048];
	char www_auth[1024];
	char content_digest[96];
};

static size_t req_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct req *q = ud;
	size_t n = size * nmemb;
	char *p;

	if (q->resp_len + n > MANIFEST_MAX) {
		q->resp_overflow = true;
		return 0;
	}
	p = realloc(q->resp, q->resp_len + n + 1);
	if (!p)
		return 0;
	memcpy(p + q->resp_len, ptr, n);
	q->resp = p;
	q->resp_len += n;
	q->resp[q->resp_len] = '\0';
	return n;
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
	size_t k = strlen(name), vlen;
	const char *v;

	if (n <= k || strncasecmp(line, name, k) != 0)
		return;
	v = line + k;
	while (v < line + n && (*v == ' ' || *v == '\t'))
		v++;
	vlen = (size_t)(line + n - v);
	while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
		vlen--;
	if (vlen >= outlen)
		return;
	memcpy(out, v, vlen);
	out[vlen] = '\0';
}

static size_t req_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct req *q = ud;
	size_t n = size * nmemb;

	header_value(ptr, n, "location:", q->location, sizeof(q->location));
	header_value(ptr, n, "www-authenticate:", q->www_auth, sizeof(q->www_auth));
	header_value(ptr, n, "docker-content-digest:", q->content_digest,
		     sizeof(q->content_digest));
	return n;
}

struct fd_reader {
	int fd;
	uint64_t off, len;
};

static size_t req_read(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct fd_reader *fr = ud;
	size_t want = MIN((uint64_t)size * nmemb, fr->len - fr->off);
	ssize_t n;

	if (!want)
		return 0;
	n = pread(fr->fd, ptr, want, (off_t)fr->off);
	if (n <= 0)
		return CURL_READFUNC_ABORT;
	fr->off += (uint64_t)n;
	return (size_t)n;
}

static int req_do(struct req *q, const struct slimfs_fetch_opts *o)
{
	struct fd_reader fr = {.fd = q->body_fd, .len = q->body_fd_len};
	CURL *h = curl_easy_init();
	CURLcode rc;

	if (!h)
		return -ENOMEM;
	free(q->resp);
	q->resp = NULL;
	q->resp_len = 0;
	q->location[0] = q->www_auth[0] = q->content_digest[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, q->url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "slimfs/" SLIMFS_VERSION);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, q->headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, req_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, req_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, q);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
	if (strcmp(q->method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	if (o && o->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	} else if (o && o->ca_file) {
		curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);
	}
	if (q->body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
	} else if (q->body_fd >= 0 && strcmp(q->method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, req_read);
		curl_easy_setopt(h, CURLOPT_READDATA, &fr);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_fd_len);
	} else if (strcmp(q->method, "POST") == 0 || strcmp(q->method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	}
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &q->status);
	curl_easy_cleanup(h);
	if (rc != CURLE_OK) {
		log_error("%s '%s': %s", q->method, q->url,
			  q->resp_overflow ? "answer too large" : curl_easy_strerror(rc));
		return -EIO;
	}
	return 0;
}

static int b64(const char *in, char **out)
{
	size_t n = strlen(in);
	char *o = malloc(4 * ((n + 2) / 3) + 1);

	if (!o)
		return -ENOMEM;
	slimfs_base64(in, n, o);
	*out = o;
	return 0;
}

/* "Basic <b64>" credentials: --creds, else the Docker config file's auths entry. */
static char *basic_auth(const char *registry, const struct slimfs_fetch_opts *o)
{
	_cleanup_free_ char *path = NULL, *enc = NULL;
	const char *dir = getenv("DOCKER_CONFIG"), *auth = NULL;
	json_t *root = NULL, *auths, *ent;
	char *hdr = NULL;

	if (o && o->creds) {
		if (!strchr(o->creds, ':')) {
			log_error("--creds: expected USER:PASS");
			return NULL;
		}
		if (b64(o->creds, &enc) < 0)
			return NULL;
		if (asprintf(&hdr, "Basic %s", enc) < 0)
			return NULL;
		return hdr;
	}
	if (dir)
		path = strdup(dir);
	else if (getenv("HOME") && asprintf(&path, "%s/.docker", getenv("HOME")) < 0)
		path = NULL;
	if (!path)
		return NULL;
	{
		char *file;

		if (asprintf(&file, "%s/config.json", path) < 0)
			return NULL;
		root = json_load_file(file, 0, NULL);
		free(file);
	}
	auths = json_object_get(root, "auths");
	ent = json_object_get(auths, registry);
	auth = json_string_value(json_object_get(ent, "auth"));
	if (auth && asprintf(&hdr, "Basic %s", auth) < 0)
		hdr = NULL;
	json_decref(root);
	return hdr;
}

/* Extracts key="value" from a WWW-Authenticate challenge. */
static char *challenge_param(const char *ch, const char *key)
{
	size_t k = strlen(key);

	for (const char *p = ch; (p = strstr(p, key)) != NULL; p += k) {
		const char *v, *e;

		if (p != ch && p[-1] != ' ' && p[-1] != ',')
			continue;
		if (p[k] != '=' || p[k + 1] != '"')
			continue;
		v = p + k + 2;
		e = strchr(v, '"');
		if (!e)
			return NULL;
		return strndup(v, (size_t)(e - v));
	}
	return NULL;
}

struct session {
	struct ociref ref;
	const struct slimfs_fetch_opts *o;
	char *base; /* "http(s)://registry/v2/repo" */
	char *auth; /* "Authorization: ..." header or NULL */
	const char *scope_actions;
};

/*
 * After a 401: obtains credentials the challenge asks for. Bearer: asks the
 * token service (with Basic credentials when we have some); Basic: uses ours.
 */
static int authenticate(struct session *s, const char *challenge)
{
	_cleanup_free_ char *basic = basic_auth(s->ref.registry, s->o);
	_cleanup_free_ char *realm = NULL, *service = NULL, *url = NULL;
	struct curl_slist *hdrs = NULL;
	struct req q = {.method = "GET", .body_fd = -1};
	json_t *root;
	const char *tok;
	char *esc_scope;
	int r;

	free(s->auth);
	s->auth = NULL;
	if (strncasecmp(challenge, "Basic", 5) == 0) {
		if (!basic) {
			log_error("'%s': the registry asks for credentials (--creds USER:PASS)",
				  s->ref.registry);
			return -EACCES;
		}
		return asprintf(&s->auth, "Authorization: %s", basic) < 0 ? -ENOMEM : 0;
	}
	if (strncasecmp(challenge, "Bearer", 6) != 0) {
		log_error("'%s': unsupported authentication '%s'", s->ref.registry, challenge);
		return -EACCES;
	}
	realm = challenge_param(challenge, "realm");
	service = challenge_param(challenge, "service");
	if (!realm) {
		log_error("'%s': bearer challenge without realm", s->ref.registry);
		return -EACCES;
	}
	{
		char scope[512];
		CURL *h = curl_easy_init();

		snprintf(scope, sizeof(scope), "repository:%s:%s", s->ref.repo, s->scope_actions);
		esc_scope = h ? curl_easy_escape(h, scope, 0) : NULL;
		if (h)
			curl_easy_cleanup(h);
		if (!esc_scope)
			return -ENOMEM;
		r = asprintf(&url, "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?",
			     service ? service : "", esc_scope);
		curl_free(esc_scope);
		if (r < 0)
			return -ENOMEM;
	}
	if (basic) {
		char *h;

		if (asprintf(&h, "Authorization: %s", basic) < 0)
			return -ENOMEM;
		hdrs = curl_slist_append(NULL, h);
		free(h);
	}
	q.url = url;
	q.headers = hdrs;
	r = req_do(&q, s->o);
	curl_slist_free_all(hdrs);
	if (r < 0)
		goto out;
	if (q.status != 200) {
		log_error("'%s': token service answered HTTP %ld%s", realm, q.status,
			  q.status == 401 ? " (bad or missing credentials)" : "");
		r = -EACCES;
		goto out;
	}
	root = json_loads(q.resp ? q.resp : "", 0, NULL);
	tok = json_string_value(json_object_get(root, "token"));
	if (!tok)
		tok = json_string_value(json_object_get(root, "access_token"));
	if (!tok) {
		log_error("'%s': token service answer has no token", realm);
		r = -EACCES;
	} else {
		r = asprintf(&s->auth, "Authorization: Bearer %s", tok) < 0 ? -ENOMEM : 0;
	}
	json_decref(root);
out:
	free(q.resp);
	return r;
}

/* A registry request with the session's auth, authenticating once on 401. */
static int session_req(struct session *s, struct req *q, struct curl_slist *extra)
{
	for (int round = 0;; round++) {
		struct curl_slist *hdrs = NULL;
		int r;

		for (struct curl_slist *e = extra; e; e = e->next)
			hdrs = curl_slist_append(hdrs, e->data);
		if (s->auth)
			hdrs = curl_slist_append(hdrs, s->auth);
		q->headers = hdrs;
		r = req_do(q, s->o);
		curl_slist_free_all(hdrs);
		q->headers = NULL;
		if (r < 0)
			return r;
		if (q->status != 401 || round > 0)
			return 0;
		if (!q->www_auth[0]) {
			log_error("'%s': HTTP 401 without a challenge", q->url);
			return -EACCES;
		}
		r = authenticate(s, q->www_auth);
		if (r < 0)
			return r;
	}
}

static int session_init(struct session *s, const char *ref, const struct slimfs_fetch_opts *o,
			const char *actions)
{
	int r;

	memset(s, 0, sizeof(*s));
	r = parse_ref(ref, o && o->insecure, &s->ref);
	if (r < 0)
		return r;
	s->o = o;
	s->scope_actions = actions;
	if (asprintf(&s->base, "%s://%s/v2/%s", s->ref.plain_http ? "http" : "https",
		     s->ref.registry, s->ref.repo) < 0) {
		ociref_free(&s->ref);
		return -ENOMEM;
	}
	return 0;
}

static void session_fini(struct session *s)
{
	ociref_free(&s->ref);
	free(s->base);
	free(s->auth);
}

int slimfs_backend_open_oci(const char *ref, const struct slimfs_fetch_opts *o,
			    struct slimfs_backend **out)
{
	struct session s;
	struct req q = {.method = "GET", .body_fd = -1};
	struct curl_slist *accept;
	_cleanup_free_ char *url = NULL, *blob_url = NULL;
	json_t *root = NULL, *layers, *layer = NULL;
	const char *blob_digest, *idx_digest;
	uint8_t want[32], idx[32];
	struct slimfs_backend *b;
	size_t i;
	int r;

	r = slimfs_dl_curl_load();
	if (r < 0)
		return r;
	accept = curl_slist_append(NULL, "Accept: " OCI_MANIFEST);
	r = session_init(&s, ref, o, "pull");
	if (r < 0)
		goto out;
	if (asprintf(&url, "%s/manifests/%s", s.base, s.ref.digest ? s.ref.digest : s.ref.tag) <
	    0) {
		r = -ENOMEM;
		goto out;
	}
	q.url = url;
	r = session_req(&s, &q, accept);
	if (r < 0)
		goto out;
	if (q.status != 200) {
		log_error("'%s': manifest: HTTP %ld%s", ref, q.status,
			  q.status == 404 ? " (no such image)" : "");
		r = q.status == 404 ? -ENOENT : -EIO;
		goto out;
	}
	if (s.ref.digest) {
		uint8_t have[32];

		slimfs_parse_digest(s.ref.digest, want);
		slimfs_sha256(q.resp, q.resp_len, have);
		if (memcmp(want, have, 32) != 0) {
			log_error("'%s': the registry's manifest does not match the digest", ref);
			r = -EBADMSG;
			goto out;
		}
	}
	root = json_loadb(q.resp ? q.resp : "", q.resp_len, 0, NULL);
	layers = json_object_get(root, "layers");
	json_array_foreach(layers, i, layer)
	{
		const char *mt = json_string_value(json_object_get(layer, "mediaType"));
		if (mt && strcmp(mt, SLIMFS_OCI_ARTIFACT_TYPE) == 0)
			break;
	}
	if (!layer || i == json_array_size(layers)) {
		log_error("'%s': not a slimfs image (no layer of type %s)", ref,
			  SLIMFS_OCI_ARTIFACT_TYPE);
		r = -EMEDIUMTYPE;
		goto out;
	}
	blob_digest = json_string_value(json_object_get(layer, "digest"));
	idx_digest = json_string_value(json_object_get(json_object_get(layer, "annotations"),
						       SLIMFS_OCI_ANNOTATION_INDEX));
	if (!blob_digest || slimfs_parse_digest(blob_digest, want) < 0 || !idx_digest ||
	    slimfs_parse_digest(idx_digest, idx) < 0) {
		log_error("'%s': manifest layer lacks a digest or the %s annotation", ref,
			  SLIMFS_OCI_ANNOTATION_INDEX);
		r = -EBADMSG;
		goto out;
	}
	if (asprintf(&blob_url, "%s/blobs/%s", s.base, blob_digest) < 0) {
		r = -ENOMEM;
		goto out;
	}
	r = slimfs_backend_open_http(blob_url, o, s.auth, &b);
	if (r < 0)
		goto out;
	free(b->name);
	b->name = strdup(ref);
	b->pinned = true;
	memcpy(b->index_digest, idx, 32);
	*out = b;
out:
	json_decref(root);
	curl_slist_free_all(accept);
	free(q.resp);
	session_fini(&s);
	return r;
}

/* Uploads a blob unless the registry has it already. */
static int push_blob(struct session *s, const char *digest, const void *mem, size_t memlen, int fd,
		     uint64_t fdlen)
{
	_cleanup_free_ char *url = NULL, *put = NULL;
	struct req q = {.method = "HEAD", .body_fd = -1};
	int r;

	if (asprintf(&url, "%s/blobs/%s", s->base, digest) < 0)
		return -ENOMEM;
	q.url = url;
	r = session_req(s, &q, NULL);
	if (r < 0)
		goto out;
	if (q.status == 200) {
		log_info("blob %.19s... exists", digest);
		goto out;
	}
	free(url);
	if (asprintf(&url, "%s/blobs/uploads/", s->base) < 0) {
		url = NULL;
		r = -ENOMEM;
		goto out;
	}
	q.method = "POST";
	q.url = url;
	r = session_req(s, &q, NULL);
	if (r < 0)
		goto out;
	if (q.status != 202 || !q.location[0]) {
		log_error("'%s': starting an upload: HTTP %ld", url, q.status);
		r = -EIO;
		goto out;
	}
	if (q.location[0] == '/') {
		if (asprintf(&put, "%s://%s%s%sdigest=%s", s->ref.plain_http ? "http" : "https",
			     s->ref.registry, q.location, strchr(q.location, '?') ? "&" : "?",
			     digest) < 0)
			put = NULL;
	} else if (asprintf(&put, "%s%sdigest=%s", q.location, strchr(q.location, '?') ? "&" : "?",
			    digest) < 0) {
		put = NULL;
	}
	if (!put) {
		r = -ENOMEM;
		goto out;
	}
	{
		struct curl_slist *ct =
			curl_slist_append(NULL, "Content-Type: application/octet-stream");

		q.method = "PUT";
		q.url = put;
		q.body = mem;
		q.body_len = memlen;
		q.body_fd = mem ? -1 : fd;
		q.body_fd_len = fdlen;
		r = session_req(s, &q, ct);
		curl_slist_free_all(ct);
	}
	if (r == 0 && q.status != 201) {
		log_error("'%s': uploading %s: HTTP %ld %s", s->base, digest, q.status,
			  q.resp ? q.resp : "");
		r = -EIO;
	}
out:
	free(q.resp);
	return r;
}

int slimfs_oci_push(const char *path, const char *ref, const uint8_t index_digest[32],
		    uint64_t index_size, const struct slimfs_fetch_opts *o,
		    char manifest_digest[72])
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *manifest = NULL, *config = NULL, *url = NULL;
	char blob_digest[72], config_digest[72], idx_hex[65], hex[65], size_str[32];
	uint8_t d[32];
	struct session s;
	struct stat st;
	json_t *m;
	int r;

	if (fd < 0)
		return log_error_errno(-errno, "cannot open '%s'", path);
	if (fstat(fd, &st) < 0)
		return -errno;
	r = slimfs_dl_curl_load();
	if (r < 0)
		return r;
	r = session_init(&s, ref, o, "pull,push");
	if (r < 0)
		return r;
	if (!s.ref.tag) {
		log_error("'%s': push needs a tag, not a digest", ref);
		r = -EINVAL;
		goto out;
	}
	/* digest of the whole file, streamed */
	{
		struct slimfs_sha256_ctx ctx;
		uint8_t buf[1 << 16];
		uint64_t off = 0;

		slimfs_sha256_init(&ctx);
		while (off < (uint64_t)st.st_size) {
			size_t n = (size_t)MIN((uint64_t)sizeof(buf), (uint64_t)st.st_size - off);
			r = slimfs_pread_all(fd, buf, n, off);
			if (r < 0)
				break;
			slimfs_sha256_update(&ctx, buf, n);
			off += n;
		}
		slimfs_sha256_final(&ctx, d);
		if (r < 0) {
			log_error_errno(r, "cannot read '%s'", path);
			goto out;
		}
	}
	slimfs_hex(d, 32, hex);
	snprintf(blob_digest, sizeof(blob_digest), "sha256:%s", hex);
	slimfs_hex(index_digest, 32, idx_hex);
	if (asprintf(&config, "{\"indexDigest\":\"sha256:%s\",\"indexSize\":%" PRIu64 "}", idx_hex,
		     index_size) < 0) {
		r = -ENOMEM;
		goto out;
	}
	slimfs_sha256(config, strlen(config), d);
	slimfs_hex(d, 32, hex);
	snprintf(config_digest, sizeof(config_digest), "sha256:%s", hex);

	r = push_blob(&s, blob_digest, NULL, 0, fd, (uint64_t)st.st_size);
	if (r < 0)
		goto out;
	r = push_blob(&s, config_digest, config, strlen(config), -1, 0);
	if (r < 0)
		goto out;

	snprintf(size_str, sizeof(size_str), "%" PRIu64, index_size);
	{
		char idx_ann[80];

		snprintf(idx_ann, sizeof(idx_ann), "sha256:%s", idx_hex);
		m = json_pack(
			"{s:i, s:s, s:s, s:{s:s, s:s, s:i}, s:[{s:s, s:s, s:I, s:{s:s, s:s}}]}",
			"schemaVersion", 2, "mediaType", OCI_MANIFEST, "artifactType",
			SLIMFS_OCI_ARTIFACT_TYPE, "config", "mediaType", SLIMFS_OCI_CONFIG_TYPE,
			"digest", config_digest, "size", (int)strlen(config), "layers", "mediaType",
			SLIMFS_OCI_ARTIFACT_TYPE, "digest", blob_digest, "size",
			(json_int_t)st.st_size, "annotations", SLIMFS_OCI_ANNOTATION_INDEX, idx_ann,
			"dev.slimfs.index.size", size_str);
	}
	manifest = m ? json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(m);
	if (!manifest) {
		r = -ENOMEM;
		goto out;
	}
	if (asprintf(&url, "%s/manifests/%s", s.base, s.ref.tag) < 0) {
		url = NULL;
		r = -ENOMEM;
		goto out;
	}
	{
		struct req q = {.method = "PUT",
				.url = url,
				.body = manifest,
				.body_len = strlen(manifest),
				.body_fd = -1};
		struct curl_slist *ct = curl_slist_append(NULL, "Content-Type: " OCI_MANIFEST);

		r = session_req(&s, &q, ct);
		curl_slist_free_all(ct);
		if (r == 0 && q.status != 201) {
			log_error("'%s': storing the manifest: HTTP %ld %s", ref, q.status,
				  q.resp ? q.resp : "");
			r = -EIO;
		}
		free(q.resp);
	}
	if (r == 0) {
		slimfs_sha256(manifest, strlen(manifest), d);
		slimfs_hex(d, 32, hex);
		snprintf(manifest_digest, 72, "sha256:%s", hex);
	}
out:
	session_fini(&s);
	return r;
}
