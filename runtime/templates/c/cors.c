// {{name}}: a Weir CORS policy. The origin named by the config's `allow_origin`
// (default "https://app.example") may call with GET and POST.
//
// Ownership follows wit-bindgen's C conventions: the arguments belong to the plugin
// (move their parts into the result or free them), and everything in the result must
// come from malloc: the generated post-return code frees it.
#include <stdlib.h>
#include <string.h>

#include "cors.h"
#include "json.h"

@CONFIG@
// The request's allowed origin (malloc'd, NUL-terminated), or NULL.
static char *allowed_origin(const cors_request_head_t *req) {
    char *configured = config_string("allow_origin");
    const char *allowed = configured ? configured : "https://app.example";
    char *out = NULL;
    for (size_t i = 0; i < req->headers.len; i++) {
        const cors_string_t *n = &req->headers.ptr[i].f0, *v = &req->headers.ptr[i].f1;
        if (n->len == 6 && memcmp(n->ptr, "origin", 6) == 0 && v->len == strlen(allowed) &&
            memcmp(v->ptr, allowed, v->len) == 0) {
            out = strdup(allowed);
            break;
        }
    }
    free(configured);
    return out;
}

static void set_header(cors_header_t *h, const char *name, const char *value) {
    cors_string_dup(&h->f0, name);
    cors_string_dup(&h->f1, value);
}

void exports_cors_preflight(cors_request_head_t *req, cors_response_t *ret) {
    char *origin = allowed_origin(req);
    text_t msg = {0};
    text_add(&msg, origin ? "preflight allowed for " : "preflight refused for ");
    text_add_n(&msg, req->path.ptr, req->path.len);
    log_text(WEIR_PLUGIN_HOST_LOG_LEVEL_INFO, &msg);
    memset(ret, 0, sizeof *ret);
    if (origin) {
        ret->status = 204;
        ret->headers.len = 4;
        ret->headers.ptr = malloc(4 * sizeof *ret->headers.ptr);
        set_header(&ret->headers.ptr[0], "access-control-allow-origin", origin);
        set_header(&ret->headers.ptr[1], "access-control-allow-methods", "GET, POST");
        set_header(&ret->headers.ptr[2], "access-control-max-age", "600");
        set_header(&ret->headers.ptr[3], "vary", "Origin");
    } else {
        ret->status = 403;
    }
    free(origin);
    cors_request_head_free(req);
}

void exports_cors_decorate(cors_request_head_t *req, cors_list_header_t *headers,
                           cors_list_header_t *ret) {
    char *origin = allowed_origin(req);
    *ret = *headers; // moved
    if (origin) {
        cors_header_t *out = malloc((ret->len + 2) * sizeof *out);
        // An empty list's pointer need not come from malloc: only a filled one is freed.
        if (ret->len) {
            memcpy(out, ret->ptr, ret->len * sizeof *out); // moved
            free(ret->ptr);
        }
        set_header(&out[ret->len], "access-control-allow-origin", origin);
        set_header(&out[ret->len + 1], "vary", "Origin");
        ret->ptr = out;
        ret->len += 2;
    }
    free(origin);
    cors_request_head_free(req);
}
