// The example mapper in C: renames and adds headers from the plugin's config, sets
// top-level fields of a JSON body, answers 400 for a malformed JSON body, and adds
// headers to the response. Same behaviour as examples/plugins/rust/mapper.
//
// Ownership follows wit-bindgen's C conventions: the arguments belong to us (move
// their parts into the result or free them), and everything in the result must come
// from malloc: the generated post-return code frees it.
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mapper.h"

typedef struct {
    json_table_t rename_headers, add_headers, json_fields, response_headers;
} config_t;

static void config_free(config_t *c) {
    json_table_free(&c->rename_headers);
    json_table_free(&c->add_headers);
    json_table_free(&c->json_fields);
    json_table_free(&c->response_headers);
}

static void log_line(weir_plugin_host_log_level_t level, const char *text) {
    mapper_string_t s = {(uint8_t *)text, strlen(text)};
    weir_plugin_host_log(level, &s); // the host copies it
}

// Reads the config; false (after logging why) when it is malformed.
static bool read_config(config_t *c) {
    mapper_string_t raw;
    weir_plugin_host_config(&raw);
    const char *why = NULL;
    memset(c, 0, sizeof *c);
    bool ok = json_config_table(raw.ptr, raw.len, "rename_headers", &c->rename_headers, &why) &&
              json_config_table(raw.ptr, raw.len, "add_headers", &c->add_headers, &why) &&
              json_config_table(raw.ptr, raw.len, "json_fields", &c->json_fields, &why) &&
              json_config_table(raw.ptr, raw.len, "response_headers", &c->response_headers, &why);
    mapper_string_free(&raw);
    if (!ok) {
        text_t msg = {0};
        text_add(&msg, "bad config: ");
        text_add(&msg, why);
        log_line(WEIR_PLUGIN_HOST_LOG_LEVEL_ERROR, text_cstr(&msg));
        free(msg.ptr);
        config_free(c);
    }
    return ok;
}

static mapper_string_t lower_dup(const uint8_t *s, size_t n) {
    mapper_string_t out = {malloc(n ? n : 1), n};
    for (size_t i = 0; i < n; i++) out.ptr[i] = (uint8_t)tolower(s[i]);
    return out;
}

static mapper_string_t dup(const void *s, size_t n) {
    mapper_string_t out = {malloc(n ? n : 1), n};
    memcpy(out.ptr, s, n);
    return out;
}

static bool same_name(const uint8_t *a, size_t an, const char *b, size_t bn) {
    if (an != bn) return false;
    for (size_t i = 0; i < an; i++)
        if (tolower(a[i]) != tolower((uint8_t)b[i])) return false;
    return true;
}

static void json_message(mapper_response_t *resp, uint16_t status, const char *message) {
    text_t body = {0};
    text_add(&body, "{\"message\":\"");
    text_add(&body, message);
    text_add(&body, "\"}");
    resp->status = status;
    resp->headers.len = 1;
    resp->headers.ptr = malloc(sizeof(weir_plugin_types_header_t));
    mapper_string_dup(&resp->headers.ptr[0].f0, "content-type");
    mapper_string_dup(&resp->headers.ptr[0].f1, "application/json");
    resp->body.len = body.len;
    resp->body.ptr = body.ptr; // moved
}

static bool is_json(const weir_plugin_types_list_header_t *h) {
    for (size_t i = 0; i < h->len; i++) {
        const mapper_string_t *n = &h->ptr[i].f0, *v = &h->ptr[i].f1;
        if (!same_name(n->ptr, n->len, "content-type", 12)) continue;
        size_t a = 0, b = 0;
        while (b < v->len && v->ptr[b] != ';') b++;
        while (a < b && isspace(v->ptr[a])) a++;
        while (b > a && isspace(v->ptr[b - 1])) b--;
        return same_name(v->ptr + a, b - a, "application/json", 16);
    }
    return false;
}

// The JSON object `body` with each field set, or false when it is not a JSON object.
static bool set_fields(const uint8_t *body, size_t n, const json_table_t *fields,
                       mapper_list_u8_t *out) {
    json_member_t *m;
    size_t count, close;
    if (!json_object_members(body, n, &m, &count, &close)) return false;
    // Per member, the replacement value (NULL: keep); appended fields go to `added`.
    const json_pair_t **replace = calloc(count ? count : 1, sizeof *replace);
    uint8_t *added = NULL, *buf = NULL;
    size_t added_len = 0, added_cap = 0, len = 0, cap = 0, members = count;
    for (size_t f = 0; f < fields->len; f++) {
        const json_pair_t *p = &fields->pairs[f];
        bool found = false;
        for (size_t i = 0; i < count; i++) {
            if (m[i].key_end - m[i].key_start == p->key_len &&
                memcmp(body + m[i].key_start, p->key, p->key_len) == 0) {
                replace[i] = p;
                found = true;
            }
        }
        if (!found) {
            if (members++ > 0) buf_append(&added, &added_len, &added_cap, ",", 1);
            json_quote(&added, &added_len, &added_cap, (uint8_t *)p->key, p->key_len);
            buf_append(&added, &added_len, &added_cap, ":", 1);
            json_quote(&added, &added_len, &added_cap, (uint8_t *)p->value, p->value_len);
        }
    }
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        if (!replace[i]) continue;
        buf_append(&buf, &len, &cap, body + at, m[i].value_start - at);
        json_quote(&buf, &len, &cap, (uint8_t *)replace[i]->value, replace[i]->value_len);
        at = m[i].value_end;
    }
    buf_append(&buf, &len, &cap, body + at, close - at);
    buf_append(&buf, &len, &cap, added, added_len);
    buf_append(&buf, &len, &cap, body + close, n - close);
    free(added);
    free(replace);
    free(m);
    out->ptr = buf;
    out->len = len;
    return true;
}

void exports_mapper_map_request(mapper_request_t *req, mapper_context_t *ctx,
                                mapper_request_outcome_t *ret) {
    config_t cfg;
    if (!read_config(&cfg)) {
        ret->tag = WEIR_PLUGIN_OUTCOMES_REQUEST_OUTCOME_RESPOND;
        json_message(&ret->val.respond, 500, "plugin misconfigured");
        mapper_request_free(req);
        mapper_context_free(ctx);
        return;
    }
    size_t original_len = req->body.len;
    text_t msg = {0};
    text_add(&msg, "map-request ");
    text_add_n(&msg, req->method.ptr, req->method.len);
    text_add(&msg, " ");
    text_add_n(&msg, req->path.ptr, req->path.len);
    text_add(&msg, " (");
    text_add_uint(&msg, req->body.len);
    text_add(&msg, " body bytes)");
    log_line(WEIR_PLUGIN_HOST_LOG_LEVEL_INFO, text_cstr(&msg));
    free(msg.ptr);

    if (req->body.len > 0 && is_json(&req->headers)) {
        mapper_list_u8_t body;
        if (!set_fields(req->body.ptr, req->body.len, &cfg.json_fields, &body)) {
            log_line(WEIR_PLUGIN_HOST_LOG_LEVEL_WARN, "malformed JSON body");
            ret->tag = WEIR_PLUGIN_OUTCOMES_REQUEST_OUTCOME_RESPOND;
            json_message(&ret->val.respond, 400, "malformed JSON body");
            mapper_request_free(req);
            mapper_context_free(ctx);
            config_free(&cfg);
            return;
        }
        mapper_list_u8_free(&req->body);
        req->body = body;
    }

    weir_plugin_types_list_header_t *in = &req->headers;
    size_t cap = in->len + cfg.add_headers.len + 2, n = 0;
    weir_plugin_types_header_t *out = malloc(cap * sizeof *out);
    for (size_t i = 0; i < in->len; i++) {
        mapper_string_t *name = &in->ptr[i].f0;
        const json_pair_t *rename = NULL;
        for (size_t r = 0; r < cfg.rename_headers.len && !rename; r++) {
            const json_pair_t *p = &cfg.rename_headers.pairs[r];
            if (same_name(name->ptr, name->len, p->key, p->key_len)) rename = p;
        }
        if (rename) {
            out[n].f0 = lower_dup((uint8_t *)rename->value, rename->value_len);
            mapper_string_free(name);
        } else {
            out[n].f0 = *name; // moved
            for (size_t k = 0; k < out[n].f0.len; k++)
                out[n].f0.ptr[k] = (uint8_t)tolower(out[n].f0.ptr[k]);
        }
        out[n++].f1 = in->ptr[i].f1; // moved
    }
    free(in->ptr);
    for (size_t a = 0; a < cfg.add_headers.len; a++, n++) {
        const json_pair_t *p = &cfg.add_headers.pairs[a];
        out[n].f0 = lower_dup((uint8_t *)p->key, p->key_len);
        out[n].f1 = dup(p->value, p->value_len);
    }
    if (ctx->principal_id.is_some) {
        mapper_string_dup(&out[n].f0, "x-principal");
        out[n++].f1 = dup(ctx->principal_id.val.ptr, ctx->principal_id.val.len);
    }
    // The length before any JSON rewrite: what the client sent.
    text_t bytes = {0};
    text_add_uint(&bytes, original_len);
    mapper_string_dup(&out[n].f0, "x-body-bytes");
    out[n].f1 = (mapper_string_t){bytes.ptr, bytes.len}; // moved
    n++;
    in->ptr = out;
    in->len = n;

    ret->tag = WEIR_PLUGIN_OUTCOMES_REQUEST_OUTCOME_FORWARD;
    ret->val.forward = *req; // moved
    mapper_context_free(ctx);
    config_free(&cfg);
}

void exports_mapper_map_response(mapper_response_t *resp, mapper_context_t *ctx,
                                 mapper_response_t *ret) {
    config_t cfg;
    mapper_context_free(ctx);
    if (!read_config(&cfg)) {
        mapper_response_free(resp);
        json_message(ret, 500, "plugin misconfigured");
        return;
    }
    size_t n = resp->headers.len, extra = cfg.response_headers.len;
    size_t size = (n + extra + 1) * sizeof(*resp->headers.ptr);
    /* An empty list's pointer is not from malloc (the ABI passes a dangling, aligned
       one): only a non-empty list may be realloc'd. */
    resp->headers.ptr = n > 0 ? realloc(resp->headers.ptr, size) : malloc(size);
    for (size_t i = 0; i < extra; i++) {
        const json_pair_t *p = &cfg.response_headers.pairs[i];
        resp->headers.ptr[n + i].f0 = lower_dup((uint8_t *)p->key, p->key_len);
        resp->headers.ptr[n + i].f1 = dup(p->value, p->value_len);
    }
    resp->headers.len = n + extra;
    *ret = *resp; // moved
    config_free(&cfg);
}
